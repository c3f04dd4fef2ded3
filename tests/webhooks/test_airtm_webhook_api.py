"""POST /api/v1/webhooks/airtm: verified on the raw body, stored once, acknowledged fast."""

import json
import time

import pytest
from django.conf import settings

from webhooks.models import InboundWebhook
from webhooks.svix import sign

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/airtm"
BODY = json.dumps({"type": "payin.confirmed", "data": {"id": "p-1", "code": "topup_x"}}).encode()


def headers(body=BODY, msg_id="msg_1", secret=None, stamp=None):
    stamp = stamp or int(time.time())
    secret = secret or settings.AIRTM_WEBHOOK_SECRETS[0]
    return {
        "HTTP_SVIX_ID": msg_id,
        "HTTP_SVIX_TIMESTAMP": str(stamp),
        "HTTP_SVIX_SIGNATURE": sign(secret=secret, msg_id=msg_id, timestamp=stamp, body=body),
    }


def post(client, body=BODY, **extra):
    return client.post(URL, data=body, content_type="application/json", **extra)


def test_a_signed_message_is_stored_and_acknowledged(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = post(client, **headers())

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "id": "msg_1"}
    row = InboundWebhook.objects.get()
    assert (row.provider, row.message_id, row.event_type, row.object_id) == (
        "airtm",
        "msg_1",
        "payin.confirmed",
        "p-1",
    )
    assert row.body.encode() == BODY
    assert row.status == InboundWebhook.Status.RECEIVED
    assert len(queued) == 1  # processing is queued after commit, not done in the request


def test_a_redelivery_is_acknowledged_as_a_duplicate_and_stored_once(client):
    post(client, **headers())

    again = post(client, **headers())

    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert InboundWebhook.objects.get().deliveries == 2


def test_a_bad_signature_is_401_and_nothing_is_stored(client):
    forged = headers(secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")

    response = post(client, **forged)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert not InboundWebhook.objects.exists()


def test_a_body_changed_after_signing_is_401(client):
    response = post(client, body=BODY.replace(b"p-1", b"p-2"), **headers())

    assert response.status_code == 401
    assert not InboundWebhook.objects.exists()


def test_missing_signature_headers_are_400_and_nothing_is_stored(client):
    response = post(client)

    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert not InboundWebhook.objects.exists()


def test_a_stale_timestamp_is_401(client):
    response = post(client, **headers(stamp=int(time.time()) - 301))

    assert response.status_code == 401
    assert not InboundWebhook.objects.exists()


def test_a_signed_but_unusable_body_is_kept_as_ignored(client):
    body = b"not json"

    response = post(client, body=body, **headers(body=body))

    assert response.status_code == 200
    assert InboundWebhook.objects.get().status == InboundWebhook.Status.IGNORED


def test_rotation_accepts_the_previous_secret_too(client, settings):
    old = "whsec_" + "T0xEU0VDUkVUT0xEU0VDUkVUT0xEU0VDUkVUT0xEU0U="
    settings.AIRTM_WEBHOOK_SECRETS = [settings.AIRTM_WEBHOOK_SECRETS[0], old]

    response = post(client, **headers(secret=old))

    assert response.status_code == 200


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


def test_the_sweep_queues_messages_whose_processing_never_finished(client, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from webhooks import inbound

    post(client, **headers(msg_id="msg_old"))
    post(client, **headers(msg_id="msg_new"))
    InboundWebhook.objects.filter(message_id="msg_old").update(
        received_at=timezone.now() - timedelta(minutes=10)
    )
    queued: list[int] = []
    monkeypatch.setattr(inbound, "_enqueue", queued.append)

    assert inbound.inbound_webhook_sweep() == 1
    assert queued == [InboundWebhook.objects.get(message_id="msg_old").pk]
