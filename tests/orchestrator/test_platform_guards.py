"""Authentication, scopes and tenancy on every route, discovered from the URL configuration."""

import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.api.views import ApiView
from orchestrator.models import ApiKey

pytestmark = pytest.mark.django_db

PUBLIC = {"health", "health/ready", "openapi.json", "docs", "redoc"}


def _routes() -> list[tuple[str, type[ApiView]]]:
    """Every /api/v1 route served by an ApiView, with placeholder ids for its parameters."""
    found: list[tuple[str, type[ApiView]]] = []

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
                continue
            route = prefix + str(p.pattern)
            view = getattr(p.callback, "view_class", None)
            if route.startswith("api/v1/") and view and issubclass(view, ApiView):
                path = re.sub(r"<(?:\w+:)?(\w+)>", r"\1_x", route)
                found.append(("/" + path, view))

    walk(get_resolver().url_patterns, "")
    return found


ROUTES = _routes()
METHODS = ("get", "post", "put", "patch", "delete")


def _calls() -> list[tuple[str, str]]:
    return [(method, path) for path, view in ROUTES for method in METHODS if hasattr(view, method)]


def test_route_discovery_finds_the_api():
    paths = {path for path, _ in ROUTES}

    assert "/api/v1/users" in paths
    assert "/api/v1/users/user_id_x/balance/credit" in paths
    assert not paths & {f"/api/v1/{p}" for p in PUBLIC}


@pytest.mark.parametrize(("method", "path"), _calls())
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "UNAUTHORIZED"),
        ("Bearer ohk_test_key_nope_0000", "INVALID_API_KEY"),
        ("Basic dXNlcjpwYXNz", "UNAUTHORIZED"),
        ("Bearer not-a-key", "INVALID_API_KEY"),
    ],
)
def test_every_protected_route_answers_401_before_reading_the_body(method, path, header, code):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.generic(method.upper(), path, "{not json", content_type="application/json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), _calls())
def test_every_protected_route_refuses_a_key_without_its_scope(
    make_client, marketplace, method, path
):
    # A key holding a scope no view asks for: every route must refuse it.
    key, raw = ApiKey.build(marketplace=marketplace, name="x", scopes=["none"], environment="test")
    key.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    response = client.generic(method.upper(), path, "{not json", content_type="application/json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize(("method", "path"), [c for c in _calls() if "_id_x" in c[1]])
def test_every_route_with_an_id_hides_other_marketplaces_objects(
    make_client, marketplace, other_marketplace, make_user, method, path
):
    if "user_id_x" not in path and "key_id_x" not in path:
        pytest.fail(f"no other-marketplace object for the id in {path}: extend this test")
    stranger = make_user(other_marketplace)
    stranger_key, _ = ApiKey.build(
        marketplace=other_marketplace, name="x", scopes=["read"], environment="test"
    )
    stranger_key.save()
    client = make_client(marketplace)
    real_path = path.replace("user_id_x", stranger.public_id).replace(
        "key_id_x", stranger_key.public_id
    )

    response = getattr(client, method)(real_path, {}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"].endswith("NOT_FOUND")


def test_read_scope_cannot_write_and_write_scope_can_read(make_client, marketplace):
    reader = make_client(marketplace, ["read"])
    writer = make_client(marketplace, ["write"])

    refused = reader.post("/api/v1/users", {"external_user_id": "a"}, format="json")
    created = writer.post("/api/v1/users", {"external_user_id": "a"}, format="json")
    listed = writer.get("/api/v1/users")

    assert refused.status_code == 403
    assert created.status_code == 201
    assert listed.status_code == 200


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "API_KEY_EXPIRED"),
        ({"revoked_at": timezone.now()}, "API_KEY_REVOKED"),
    ],
)
def test_expired_and_revoked_keys_are_refused(make_key, marketplace, change, code):
    key, raw = make_key(marketplace)
    ApiKey.objects.filter(pk=key.pk).update(**change)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    response = client.get("/api/v1/users")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def test_a_key_with_a_forged_secret_is_refused(make_key, marketplace):
    _, raw = make_key(marketplace)
    forged = raw[:-4] + ("0000" if not raw.endswith("0000") else "1111")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")

    response = client.get("/api/v1/users")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_API_KEY"


def test_the_raw_key_is_stored_nowhere_and_last_use_is_recorded(make_key, marketplace):
    key, raw = make_key(marketplace)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    client.get("/api/v1/users")

    key.refresh_from_db()
    assert key.last_used_at is not None
    stored = [str(v) for v in ApiKey.objects.filter(pk=key.pk).values().get().values()]
    assert not any(raw in value or raw.rsplit("_", 1)[1] in value for value in stored)
