"""Webhooks in the admin: outbound deliveries replayed by finance (button and action, through
webhooks.outbound), and inbound provider webhooks with their verification result, the
refused ones included."""

import hashlib
import json
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client

from orchestrator.models import AuditLog
from webhooks.models import InboundRejection, InboundWebhook, WebhookDelivery
from webhooks.svix import sign

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

AIRTM_URL = "/api/v1/webhooks/airtm"
BODY = json.dumps({"type": "payin.confirmed", "data": {"id": "p-1", "code": "topup_x"}}).encode()
FORGED_SECRET = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="


def svix_headers(secret: str, msg_id: str = "msg_1") -> dict[str, Any]:
    stamp = int(time.time())
    return {
        "HTTP_SVIX_ID": msg_id,
        "HTTP_SVIX_TIMESTAMP": str(stamp),
        "HTTP_SVIX_SIGNATURE": sign(secret=secret, msg_id=msg_id, timestamp=stamp, body=BODY),
    }


@pytest.fixture
def failed_delivery(
    receiver, make_endpoint, make_user, marketplace, django_capture_on_commit_callbacks
):
    """A delivery whose first attempt the receiver answered 500."""
    receiver.statuses = [500]
    make_endpoint(marketplace, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        make_user(marketplace)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempt_count, delivery.last_status_code) == (1, 500)
    return delivery


def test_finance_replays_a_delivery_from_its_page(
    staff_client, failed_delivery, receiver, django_capture_on_commit_callbacks
):
    client = staff_client("finance", "fin")
    page = client.get(f"/admin/webhooks/webhookdelivery/{failed_delivery.pk}/change/")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/webhooks/webhookdelivery/{failed_delivery.pk}/replay/")

    delivery = WebhookDelivery.objects.get(pk=failed_delivery.pk)
    assert 'id="replay-form"' in page.content.decode()
    assert response.status_code == 302
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert len(receiver.received) == 2
    assert list(delivery.attempts.values_list("status_code", flat=True)) == [500, 200]
    replayed = AuditLog.objects.get(action="webhook_endpoint.delivery_replayed")
    assert (replayed.actor_kind, replayed.actor_id) == ("staff", "fin")
    assert replayed.after == {"deliveries": [delivery.public_id]}


def test_finance_replays_selected_deliveries_with_the_action(
    staff_client, failed_delivery, receiver, django_capture_on_commit_callbacks
):
    client = staff_client("finance")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/webhooks/webhookdelivery/",
            {"action": "replay", "_selected_action": [failed_delivery.pk]},
        )

    assert response.status_code == 302
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.SUCCEEDED
    assert len(receiver.received) == 2


def test_only_a_user_allowed_to_replay_gets_the_button(staff_client, failed_delivery, make_staff):
    reader = make_staff("", "reader")  # may view deliveries, not replay them
    reader.user_permissions.add(
        Permission.objects.get(content_type__app_label="webhooks", codename="view_webhookdelivery")
    )
    client = Client()
    client.force_login(reader)
    url = f"/admin/webhooks/webhookdelivery/{failed_delivery.pk}/"

    page = client.get(f"{url}change/")
    refused = client.post(f"{url}replay/")
    by_support = staff_client("support").post(f"{url}replay/")

    assert page.status_code == 200
    assert 'id="replay-form"' not in page.content.decode()
    assert (refused.status_code, by_support.status_code) == (403, 403)
    assert WebhookDelivery.objects.get().attempt_count == 1


def test_inbound_webhooks_show_their_verification_result(staff_client):
    sender = Client()
    accepted = sender.post(
        AIRTM_URL,
        data=BODY,
        content_type="application/json",
        **svix_headers(settings.AIRTM_WEBHOOK_SECRETS[0]),
    )
    forged = sender.post(
        AIRTM_URL,
        data=BODY,
        content_type="application/json",
        **svix_headers(FORGED_SECRET, msg_id="msg_forged"),
    )
    unsigned = sender.post(AIRTM_URL, data=BODY, content_type="application/json")
    finance = staff_client("finance")

    verified_list = finance.get("/admin/webhooks/inboundwebhook/")
    refused_list = finance.get("/admin/webhooks/inboundrejection/")

    assert (accepted.status_code, forged.status_code, unsigned.status_code) == (200, 401, 400)
    assert InboundWebhook.objects.get().message_id == "msg_1"  # only the verified one
    verified_rows = verified_list.context["cl"].result_list
    assert [row.message_id for row in verified_rows] == ["msg_1"]
    assert "signature verified" in verified_list.content.decode()
    refused = {r.message_id: r for r in InboundRejection.objects.all()}
    assert set(refused) == {"msg_forged", ""}
    assert refused["msg_forged"].code == "WEBHOOK_SIGNATURE_INVALID"
    assert refused["msg_forged"].body_sha256 == hashlib.sha256(BODY).hexdigest()
    assert refused["msg_forged"].body_size == len(BODY)
    assert refused["msg_forged"].headers["svix-id"] == "msg_forged"
    assert refused["msg_forged"].remote_addr == "127.0.0.1"
    assert refused[""].code == "WEBHOOK_SIGNATURE_INVALID"  # headers missing: its 400 subclass
    html = refused_list.content.decode()
    assert f"refused: {refused['msg_forged'].reason}" in html
    assert len(refused_list.context["cl"].result_list) == 2


def test_refusals_beyond_the_per_minute_cap_are_not_recorded(monkeypatch):
    monkeypatch.setattr("webhooks.inbound.REJECTIONS_KEPT_PER_MINUTE", 2)
    sender = Client()

    answers = [
        sender.post(
            AIRTM_URL,
            data=BODY,
            content_type="application/json",
            **svix_headers(FORGED_SECRET, msg_id=f"msg_{n}"),
        ).status_code
        for n in range(4)
    ]

    assert answers == [401, 401, 401, 401]
    assert sorted(InboundRejection.objects.values_list("message_id", flat=True)) == [
        "msg_0",
        "msg_1",
    ]
