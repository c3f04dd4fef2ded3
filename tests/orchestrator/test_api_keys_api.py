import pytest
from rest_framework.test import APIClient

from orchestrator.models import ApiKey, AuditLog

pytestmark = pytest.mark.django_db


def test_api_key_create_shows_the_key_once_and_it_authenticates(api, marketplace):
    created = api.post(
        "/api/v1/auth/api-keys", {"name": "backend", "scopes": ["read"]}, format="json"
    )
    raw = created.json()["key"]

    listed = api.get("/api/v1/auth/api-keys")
    me = APIClient().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert created.status_code == 201
    assert raw.startswith("ohk_test_key_")
    assert all("key" not in item for item in listed.json()["data"])
    assert me.json()["api_key"]["id"] == created.json()["id"]
    assert me.json()["marketplace"]["id"] == marketplace.public_id
    assert not ApiKey.objects.filter(key_hash=raw).exists()


def test_api_key_create_refuses_unknown_scopes(api):
    response = api.post(
        "/api/v1/auth/api-keys", {"name": "x", "scopes": ["read", "root"]}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "scopes" in response.json()["error"]["details"]["fields"]


def test_api_key_management_needs_the_admin_scope(make_client, marketplace):
    writer = make_client(marketplace, ["read", "write"])

    response = writer.post(
        "/api/v1/auth/api-keys", {"name": "x", "scopes": ["read"]}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INSUFFICIENT_SCOPE"


def test_api_key_revoke_stops_the_key_at_once_and_is_audited(api, make_key, marketplace):
    key, raw = make_key(marketplace, ["read"])

    revoked = api.post(f"/api/v1/auth/api-keys/{key.public_id}/revoke")
    after = APIClient().get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert revoked.json()["revoked_at"] is not None
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "API_KEY_REVOKED"
    assert AuditLog.objects.filter(action="api_key.revoked", object_id=key.public_id).count() == 1


def test_api_key_revoke_of_another_marketplaces_key_is_not_found(api, make_key, other_marketplace):
    key, _ = make_key(other_marketplace, ["read"])

    response = api.post(f"/api/v1/auth/api-keys/{key.public_id}/revoke")

    assert response.status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
