"""Replay of deliveries over the API: one, or every delivery a filter selects."""

import pytest
from standardwebhooks.webhooks import Webhook

from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(receiver, make_endpoint, make_user, marketplace, django_capture_on_commit_callbacks):
    """Two endpoints on the receiver; three users made: six deliveries, one of them failed."""
    receiver.statuses = [500]
    first, secret = make_endpoint(marketplace, receiver.url + "/a", ["user.*"])
    second, _ = make_endpoint(marketplace, receiver.url + "/b", ["user.created"])
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            make_user(marketplace)
    WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None, locked_until=None
    )
    return first, second, secret


def test_replay_of_one_delivery_sends_it_again_with_the_same_id(
    api, receiver, delivered, django_capture_on_commit_callbacks
):
    first, _, secret = delivered
    delivery = WebhookDelivery.objects.filter(
        endpoint=first, status=WebhookDelivery.Status.SUCCEEDED
    )[0]
    before = len(receiver.received)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/webhooks/deliveries/{delivery.public_id}/replay")

    delivery.refresh_from_db()
    again = receiver.received[before:]
    assert response.status_code == 202
    assert len(again) == 1
    assert again[0].headers["webhook-id"] == delivery.event.public_id
    assert Webhook(secret).verify(again[0].body, again[0].headers)["id"] == delivery.event.public_id
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempt_count == 2
    detail = api.get(f"/api/v1/webhooks/deliveries/{delivery.public_id}").json()
    assert [a["number"] for a in detail["attempts"]] == [1, 2]


def test_replay_of_a_filtered_set_sends_only_what_it_selects(
    api, receiver, delivered, django_capture_on_commit_callbacks
):
    failed = WebhookDelivery.objects.get(status=WebhookDelivery.Status.FAILED)
    before = len(receiver.received)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/webhooks/deliveries/replay",
            {"status": "failed", "endpoint_id": failed.endpoint.public_id},
            format="json",
        )

    failed.refresh_from_db()
    assert response.status_code == 202
    assert response.json()["delivery_ids"] == [failed.public_id]
    assert len(receiver.received) == before + 1
    assert failed.status == WebhookDelivery.Status.SUCCEEDED


def test_replay_by_type_pattern_and_listing_by_status(api, delivered, receiver):
    response = api.get("/api/v1/webhooks/deliveries", {"status": "succeeded", "types": "user.*"})

    assert response.status_code == 200
    assert len(response.json()["data"]) == 5
    assert {d["status"] for d in response.json()["data"]} == {"succeeded"}


def test_replay_to_a_disabled_endpoint_is_a_conflict(api, delivered):
    first, _, _ = delivered
    delivery = WebhookDelivery.objects.filter(endpoint=first)[0]
    api.patch(f"/api/v1/webhooks/endpoints/{first.public_id}", {"enabled": False}, format="json")

    response = api.post(f"/api/v1/webhooks/deliveries/{delivery.public_id}/replay")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_STATE"


def test_another_marketplaces_deliveries_are_not_replayed(
    make_client, other_marketplace, delivered
):
    response = make_client(other_marketplace).post(
        "/api/v1/webhooks/deliveries/replay", {}, format="json"
    )

    assert response.status_code == 202
    assert response.json()["queued"] == 0
