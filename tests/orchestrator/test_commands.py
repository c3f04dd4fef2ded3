from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from orchestrator.models import ApiKey, Marketplace

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_create_marketplace_then_a_key_that_authenticates_with_its_scopes():
    public_id = run("create_marketplace", "Shop", "--slug", "shop", "--platform-fee-bps", "150")
    raw = run("create_api_key", "shop", "--scopes", "read", "--environment", "live")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    listed = client.get("/api/v1/users")
    refused = client.post("/api/v1/users", {"external_user_id": "a"}, format="json")

    assert Marketplace.objects.get(public_id=public_id).platform_fee_bps == 150
    assert raw.startswith("ohk_live_key_")
    assert listed.status_code == 200
    assert refused.status_code == 403
    assert ApiKey.objects.get().scopes == ["read"]


def test_create_api_key_for_an_unknown_marketplace_fails():
    with pytest.raises(CommandError):
        run("create_api_key", "nowhere")


def test_bootstrap_demo_is_repeatable_and_prints_a_working_key():
    first = run("bootstrap_demo")
    second = run("bootstrap_demo")
    raw = next(line.split(": ")[1] for line in second.splitlines() if "shown once" in line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert Marketplace.objects.filter(slug="demo").count() == 1
    assert first != second
    assert client.get("/api/v1/auth/me").json()["api_key"]["scopes"] == [
        "admin",
        "read",
        "support",
        "write",
    ]
