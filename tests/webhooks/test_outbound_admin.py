"""The admin's webhook deliveries: listed with their attempts, replayable by staff."""

import pytest
from django.contrib.auth.models import User

from orchestrator.models import AuditLog
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def test_staff_replay_selected_deliveries(
    client, receiver, make_endpoint, make_user, marketplace, django_capture_on_commit_callbacks
):
    receiver.statuses = [500]
    make_endpoint(marketplace, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        make_user(marketplace)
    delivery = WebhookDelivery.objects.get()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))

    listing = client.get("/admin/webhooks/webhookdelivery/")
    page = client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/webhooks/webhookdelivery/",
            {"action": "replay", "_selected_action": [delivery.pk]},
        )

    delivery.refresh_from_db()
    assert listing.status_code == 200
    assert delivery.public_id.encode() in listing.content
    assert page.status_code == 200
    assert response.status_code == 302
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert len(receiver.received) == 2
    replayed = AuditLog.objects.get(action="webhook_endpoint.delivery_replayed")
    assert (replayed.actor_kind, replayed.actor_id) == ("staff", "ops")
