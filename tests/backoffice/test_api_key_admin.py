"""API keys in the admin: creating one shows its secret once (orchestrator.services makes it;
only its digest is stored) and revoking stops it at once; both audited as the staff user."""

import re

import pytest
from rest_framework.test import APIClient

from orchestrator.models import ApiKey, AuditLog, hash_api_key

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

KEYS = "/admin/orchestrator/apikey/"
RAW_KEY = re.compile(r"ohk_test_key_\w+")


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_creating_a_key_shows_its_secret_once(staff_client, marketplace):
    client = staff_client("admin", "root")

    form = client.get(f"{KEYS}add/")
    created = client.post(
        f"{KEYS}add/",
        {
            "marketplace": marketplace.pk,
            "name": "checkout backend",
            "scopes": ["read", "write"],
            "environment": "test",
        },
    )

    assert form.status_code == 200
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    html = created.content.decode()
    shown = RAW_KEY.search(html)
    assert shown is not None
    raw = shown.group(0)
    assert "shown once" in html
    key = ApiKey.objects.get()
    assert (key.name, key.scopes, key.marketplace_id) == (
        "checkout backend",
        ["read", "write"],
        marketplace.pk,
    )
    assert key.key_hash == hash_api_key(raw)  # only the digest is kept
    assert bearer(raw).get("/api/v1/auth/me").json()["api_key"]["id"] == key.public_id
    record = client.get(f"{KEYS}{key.pk}/change/").content.decode()
    listing = client.get(KEYS).content.decode()
    assert raw not in record
    assert raw not in listing
    audit = AuditLog.objects.get(action="api_key.created")
    assert (audit.actor_kind, audit.actor_id, audit.object_id) == ("staff", "root", key.public_id)


def test_a_key_needs_a_scope(staff_client, marketplace):
    response = staff_client("admin").post(
        f"{KEYS}add/",
        {"marketplace": marketplace.pk, "name": "x", "environment": "test"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["scopes"]
    assert RAW_KEY.search(response.content.decode()) is None
    assert not ApiKey.objects.exists()


def test_revoking_keys_stops_them_at_once(staff_client, make_key, marketplace):
    key, raw = make_key(marketplace)
    assert bearer(raw).get("/api/v1/auth/me").status_code == 200

    response = staff_client("admin", "root").post(
        KEYS, {"action": "revoke", "_selected_action": [key.pk]}
    )

    assert response.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert bearer(raw).get("/api/v1/auth/me").status_code == 401
    audit = AuditLog.objects.get(action="api_key.revoked")
    assert (audit.actor_kind, audit.actor_id, audit.reason) == ("staff", "root", "revoked in admin")


def test_a_key_record_cannot_be_edited(staff_client, make_key, marketplace):
    key, _ = make_key(marketplace)

    response = staff_client("admin").post(f"{KEYS}{key.pk}/change/", {"name": "renamed"})

    assert response.status_code == 403
    assert ApiKey.objects.get(pk=key.pk).name == "test"
