"""Management commands print what an operator needs, and the keys they print work."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.models import ApiKey, AuditLog, Marketplace

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_create_marketplace_prints_only_its_public_id_and_is_audited():
    printed = run("create_marketplace", "Shop", "--slug", "shop", "--platform-fee-bps", "150")

    marketplace = Marketplace.objects.get(slug="shop")
    assert printed == marketplace.public_id
    assert printed.startswith("mkt_")
    assert (marketplace.name, marketplace.platform_fee_bps) == ("Shop", 150)
    audit = AuditLog.objects.get(action="marketplace.created", object_id=printed)
    assert (audit.actor_kind, audit.actor_id) == ("system", "manage.py create_marketplace")


@pytest.mark.parametrize("ref", ["slug", "public_id"])
def test_create_api_key_prints_a_key_that_authenticates_with_its_scopes(ref):
    public_id = run("create_marketplace", "Shop", "--slug", "shop")

    raw = run(
        "create_api_key",
        "shop" if ref == "slug" else public_id,
        "--scopes",
        "read",
        "--environment",
        "live",
    )
    me = client_for(raw).get("/api/v1/auth/me")
    refused = client_for(raw).post("/api/v1/users", {"external_user_id": "a"}, format="json")

    assert raw.startswith("ohk_live_key_")
    assert "\n" not in raw
    assert me.status_code == 200
    assert me.json()["marketplace"]["id"] == public_id
    assert me.json()["api_key"]["scopes"] == ["read"]
    assert refused.status_code == 403
    assert not ApiKey.objects.filter(key_hash=raw).exists()
    assert AuditLog.objects.get(action="api_key.created").actor_id == "manage.py create_api_key"


@override_settings(API_KEY_ENVIRONMENT="live")
def test_create_api_key_defaults_to_read_write_in_the_configured_environment():
    run("create_marketplace", "Shop", "--slug", "shop")

    raw = run("create_api_key", "shop")
    created = client_for(raw).post("/api/v1/users", {"external_user_id": "a"}, format="json")

    key = ApiKey.objects.get()
    assert raw.startswith("ohk_live_")
    assert key.scopes == ["read", "write"]
    assert key.expires_at is None
    assert created.status_code == 201


def test_create_api_key_can_set_an_expiry():
    run("create_marketplace", "Shop", "--slug", "shop")

    run("create_api_key", "shop", "--expires-in-days", "7")

    expires = ApiKey.objects.get().expires_at
    assert expires is not None
    assert abs(expires - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


def test_create_api_key_for_an_unknown_marketplace_fails():
    with pytest.raises(CommandError, match="nowhere"):
        run("create_api_key", "nowhere")

    assert not ApiKey.objects.exists()


def test_bootstrap_demo_prints_the_marketplace_a_key_and_a_curl_line():
    printed = run("bootstrap_demo").splitlines()

    marketplace = Marketplace.objects.get(slug="demo")
    raw = printed[1].split(": ", 1)[1]
    assert printed[0] == f"Demo marketplace: {marketplace.public_id}"
    assert printed[1].startswith("API key (shown once): ohk_test_")
    assert raw in printed[2]
    assert "/api/v1/users" in printed[2]
    assert client_for(raw).get("/api/v1/auth/me").json()["api_key"]["scopes"] == [
        "admin",
        "read",
        "support",
        "write",
    ]


def test_bootstrap_demo_is_repeatable_and_each_run_prints_a_new_working_key():
    first = run("bootstrap_demo").splitlines()[1].split(": ", 1)[1]
    second = run("bootstrap_demo").splitlines()[1].split(": ", 1)[1]

    assert Marketplace.objects.filter(slug="demo").count() == 1
    assert first != second
    assert client_for(first).get("/api/v1/users").status_code == 200
    assert client_for(second).get("/api/v1/users").status_code == 200
