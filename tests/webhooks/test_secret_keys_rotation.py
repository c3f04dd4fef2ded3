"""Rotating the key that seals webhook signing secrets at rest (manage.py
rotate_webhook_secret_keys): the secrets survive, readable with the new key alone."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import override_settings

from orchestrator.models import Marketplace
from webhooks.models import WebhookSecret
from webhooks.outbound import endpoint_create
from webhooks.secrets import SecretUnreadableError, unseal

pytestmark = pytest.mark.django_db


def test_resealed_secrets_open_with_the_new_key_alone(marketplace: Marketplace) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(WEBHOOK_SECRET_KEYS=[old]):
        _, raw = endpoint_create(
            marketplace=marketplace, url="https://hooks.example.com/a", event_types=["*"]
        )
    out = io.StringIO()

    with override_settings(WEBHOOK_SECRET_KEYS=[new, old]):
        call_command("rotate_webhook_secret_keys", stdout=out)

    assert "Re-sealed 1 webhook signing secret(s)." in out.getvalue()
    sealed = WebhookSecret.objects.get().sealed
    with override_settings(WEBHOOK_SECRET_KEYS=[new]):
        assert unseal(sealed) == raw
    with override_settings(WEBHOOK_SECRET_KEYS=[old]), pytest.raises(SecretUnreadableError):
        unseal(sealed)
