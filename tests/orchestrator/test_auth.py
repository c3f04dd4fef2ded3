"""API keys and Bearer authentication: 401 before anything else, on every protected route."""

from datetime import timedelta

import pytest
from django.urls import resolve
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.api.authentication import LAST_USED_RESOLUTION
from orchestrator.models import ApiKey, AuditLog, Event, IdempotencyRecord
from tests.orchestrator.support import envelope, protected_routes, route_id, row_counts

pytestmark = pytest.mark.django_db

ROUTES = protected_routes()
BAD_CREDENTIALS = [
    pytest.param(None, "UNAUTHORIZED", id="no-header"),
    pytest.param("Bearer", "UNAUTHORIZED", id="bearer-without-key"),
    pytest.param("Basic dXNlcjpwYXNz", "UNAUTHORIZED", id="basic"),
    pytest.param("Bearer not-a-key", "INVALID_API_KEY", id="malformed"),
    pytest.param("Bearer ohk_prod_key_abc_def", "INVALID_API_KEY", id="unknown-environment"),
    pytest.param("Bearer ohk_test_key_nope_0000", "INVALID_API_KEY", id="unknown-key"),
    pytest.param("Bearer ohk_test_key_a\x00b_00", "INVALID_API_KEY", id="nul-byte"),
    pytest.param("Bearer ohk_test_key_a_b_c", "INVALID_API_KEY", id="extra-part"),
]


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_route_discovery_finds_every_protected_route_and_no_public_one():
    templates = {route.template for route in ROUTES}

    assert {"/api/v1/users", "/api/v1/users/<str:user_id>", "/api/v1/auth/me"} <= templates
    assert "/api/v1/auth/api-keys/<str:key_id>/revoke" in templates
    assert not templates & {"/api/v1/health", "/api/v1/health/ready", "/api/v1/openapi.json"}
    assert not templates & {"/api/v1/docs", "/api/v1/redoc"}
    assert all(resolve(route.path()).route == route.template[1:] for route in ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
@pytest.mark.parametrize(("header", "code"), BAD_CREDENTIALS)
def test_every_protected_route_answers_401_before_reading_the_body(route, method, header, code):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    before = row_counts()

    response = client.generic(
        method.upper(),
        route.path(),
        '{"unknown": [not json',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="auth-probe",
    )

    assert response.status_code == 401
    assert envelope(response)["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert row_counts() == before


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "API_KEY_EXPIRED"),
        ({"revoked_at": timezone.now()}, "API_KEY_REVOKED"),
    ],
    ids=["expired", "revoked"],
)
def test_expired_and_revoked_keys_are_refused_before_validation(
    make_key, marketplace, change, code
):
    key, raw = make_key(marketplace)
    ApiKey.objects.filter(pk=key.pk).update(**change)
    before = row_counts()

    response = bearer(raw).post(
        "/api/v1/users", '{"colour": 1', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 401
    assert envelope(response)["code"] == code
    assert row_counts() == before


def test_a_key_that_expires_later_still_authenticates(make_key, marketplace):
    _, raw = make_key(marketplace, expires_at=timezone.now() + timedelta(minutes=5))

    response = bearer(raw).get("/api/v1/auth/me")

    assert response.status_code == 200


def test_a_disabled_marketplace_s_keys_are_refused(make_key, marketplace):
    _, raw = make_key(marketplace)
    marketplace.is_active = False
    marketplace.save()

    response = bearer(raw).get("/api/v1/users")

    assert response.status_code == 401
    assert envelope(response)["code"] == "UNAUTHORIZED"


def test_a_key_with_a_forged_secret_is_refused(make_key, marketplace):
    _, raw = make_key(marketplace)
    forged = raw[:-4] + ("0000" if not raw.endswith("0000") else "1111")

    response = bearer(forged).get("/api/v1/users")

    assert response.status_code == 401
    assert envelope(response)["code"] == "INVALID_API_KEY"


def test_a_test_key_presented_as_live_is_refused(make_key, marketplace):
    _, raw = make_key(marketplace)

    response = bearer(raw.replace("ohk_test_", "ohk_live_", 1)).get("/api/v1/users")

    assert response.status_code == 401
    assert envelope(response)["code"] == "INVALID_API_KEY"


def test_the_bearer_scheme_is_case_insensitive(make_key, marketplace):
    _, raw = make_key(marketplace)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {raw}")

    response = client.get("/api/v1/auth/me")

    assert response.status_code == 200


@pytest.mark.parametrize("environment", ["live", "test"])
def test_keys_carry_their_environment_prefix_and_public_id(marketplace, environment):
    from orchestrator.services import api_key_create

    key, raw = api_key_create(
        marketplace=marketplace, name="k", scopes=["read"], environment=environment
    )

    assert raw.startswith(f"ohk_{environment}_{key.public_id}_")
    assert key.public_id.startswith("key_")
    assert key.hint == raw[-4:]
    assert len(raw.rsplit("_", 1)[1]) >= 48


def test_the_raw_key_is_stored_nowhere_in_its_row(make_key, marketplace):
    key, raw = make_key(marketplace)
    secret = raw.rsplit("_", 1)[1]

    stored = [str(value) for value in ApiKey.objects.filter(pk=key.pk).values().get().values()]

    assert not [value for value in stored if raw in value or secret in value]
    assert key.matches(raw)


def test_a_key_made_over_the_api_leaves_no_trace_in_audit_events_or_idempotency(api):
    response = api.post(
        "/api/v1/auth/api-keys",
        {"name": "backend", "scopes": ["read"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="new-key",
    )
    raw = response.json()["key"]
    secret = raw.rsplit("_", 1)[1]

    rows = [
        *AuditLog.objects.values(),
        *Event.objects.values(),
        *IdempotencyRecord.objects.values(),
        *ApiKey.objects.values(),
    ]

    assert response.status_code == 201
    assert AuditLog.objects.filter(action="api_key.created").exists()
    assert IdempotencyRecord.objects.exists()
    assert not [row for row in rows if secret in str(row)]


def test_last_used_at_is_recorded_on_use(make_key, marketplace):
    key, raw = make_key(marketplace)
    unused = key.last_used_at

    bearer(raw).get("/api/v1/auth/me")

    key.refresh_from_db()
    assert unused is None
    assert key.last_used_at is not None
    assert timezone.now() - key.last_used_at < timedelta(seconds=30)


@pytest.mark.parametrize(
    ("age", "rewritten"),
    [(timedelta(seconds=10), False), (LAST_USED_RESOLUTION + timedelta(seconds=1), True)],
    ids=["recent", "stale"],
)
def test_last_used_at_is_rewritten_only_past_its_resolution(make_key, marketplace, age, rewritten):
    key, raw = make_key(marketplace)
    earlier = timezone.now() - age
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=earlier)

    bearer(raw).get("/api/v1/auth/me")

    key.refresh_from_db()
    assert (key.last_used_at != earlier) is rewritten


def test_a_failed_authentication_does_not_touch_last_used_at(make_key, marketplace):
    key, raw = make_key(marketplace)

    bearer(raw[:-4] + "zzzz").get("/api/v1/auth/me")

    key.refresh_from_db()
    assert key.last_used_at is None
