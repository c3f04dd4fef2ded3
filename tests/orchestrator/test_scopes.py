"""Scopes: every view declares the scope each method needs; 403 comes before validation."""

import pytest
from rest_framework.test import APIClient

from orchestrator.models import ApiKey, MarketplaceUser
from tests.orchestrator.support import envelope, protected_routes, route_id, row_counts

pytestmark = pytest.mark.django_db

CALLS = [
    pytest.param(route, method, id=f"{method}-{route_id(route)}")
    for route in protected_routes()
    if route.is_api_view
    for method in route.methods
]


def client_with_scopes(marketplace, scopes: list[str]) -> APIClient:
    # Built directly: the service refuses scopes outside the catalogue, this test needs one.
    key, raw = ApiKey.build(marketplace=marketplace, name="x", scopes=scopes, environment="test")
    key.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.mark.parametrize(("route", "method"), CALLS)
def test_every_route_refuses_a_key_without_its_scope_before_validation(marketplace, route, method):
    client = client_with_scopes(marketplace, ["none"])
    before = row_counts()

    response = client.generic(
        method.upper(),
        route.path(),
        "{not json",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="scope-probe",
    )

    assert response.status_code == 403
    assert envelope(response)["code"] == "INSUFFICIENT_SCOPE"
    assert row_counts() == before


@pytest.mark.parametrize(("route", "method"), CALLS)
def test_every_route_declares_a_scope_that_admin_passes(api, route, method):
    response = api.generic(method.upper(), route.path(), "{}", content_type="application/json")

    assert response.status_code not in (401, 403), response.content


@pytest.mark.parametrize(
    ("scopes", "list_status", "create_status"),
    [
        (["read"], 200, 403),
        (["write"], 200, 201),
        (["support"], 200, 403),
        (["admin"], 200, 201),
        (["read", "support"], 200, 403),
    ],
)
def test_scope_matrix_for_users(make_client, marketplace, scopes, list_status, create_status):
    client = make_client(marketplace, scopes)

    listed = client.get("/api/v1/users")
    created = client.post("/api/v1/users", {"external_user_id": "a"}, format="json")

    assert listed.status_code == list_status
    assert created.status_code == create_status
    assert MarketplaceUser.objects.filter(external_user_id="a").exists() is (create_status == 201)


@pytest.mark.parametrize("scopes", [["read"], ["write"], ["support"], ["read", "write", "support"]])
def test_api_key_management_needs_the_admin_scope(make_client, marketplace, scopes):
    client = make_client(marketplace, scopes)

    listed = client.get("/api/v1/auth/api-keys")
    created = client.post("/api/v1/auth/api-keys", {"name": "x", "scopes": ["read"]}, format="json")

    assert (listed.status_code, created.status_code) == (403, 403)
    assert envelope(created)["code"] == "INSUFFICIENT_SCOPE"
    assert "admin" in envelope(created)["message"]
    assert ApiKey.objects.count() == 1


def test_missing_scope_is_answered_before_validation(make_client, marketplace):
    reader = make_client(marketplace, ["read"])

    response = reader.post("/api/v1/users", {"colour": "red"}, format="json")

    assert response.status_code == 403
    assert envelope(response)["code"] == "INSUFFICIENT_SCOPE"


@pytest.mark.parametrize("method", ["head", "options"])
@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/auth/me"])
def test_head_and_options_need_what_get_needs(make_client, marketplace, method, path):
    reader = make_client(marketplace, ["read"])
    outsider = client_with_scopes(marketplace, ["none"])

    allowed = getattr(reader, method)(path)
    refused = getattr(outsider, method)(path)

    assert allowed.status_code == 200
    assert refused.status_code == 403
