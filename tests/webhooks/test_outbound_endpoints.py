"""Webhook endpoints API: secret shown once and sealed, filters, rotation, ping, enable/disable."""

import json

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from orchestrator.models import AuditLog, Event
from tests.webhooks.conftest import create_endpoint
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSecret
from webhooks.outbound import deliveries_record, endpoint_signing_secrets, signed_headers
from webhooks.secrets import unseal

pytestmark = pytest.mark.django_db


def test_create_shows_the_secret_once_and_stores_it_sealed(api):
    created = create_endpoint(
        api, url="https://hooks.example.com/in", event_types=["user.*"], description="main"
    )

    shown = api.get(f"/api/v1/webhooks/endpoints/{created['id']}").json()
    listed = api.get("/api/v1/webhooks/endpoints").json()["data"]
    sealed = WebhookSecret.objects.get(endpoint__public_id=created["id"])
    assert created["secret"].startswith("whsec_")
    assert "secret" not in shown
    assert all("secret" not in row for row in listed)
    assert shown["event_types"] == ["user.*"]
    assert shown["enabled"] is True
    assert created["secret"] not in sealed.sealed
    assert unseal(sealed.sealed) == created["secret"]
    assert created["secret"] not in json.dumps(list(AuditLog.objects.values("after", "before")))


def test_an_idempotent_replay_of_the_creation_hides_the_secret(api):
    body = {"url": "https://hooks.example.com/in"}

    first = api.post("/api/v1/webhooks/endpoints", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/api/v1/webhooks/endpoints", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert first.json()["secret"].startswith("whsec_")
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["secret"] != first.json()["secret"]
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize(
    "event_types", [["order"], ["no.such.type"], ["user.*", "USER.created"], ["*.created"], []]
)
def test_unknown_types_and_malformed_patterns_are_refused(api, event_types):
    response = api.post(
        "/api/v1/webhooks/endpoints",
        {"url": "https://hooks.example.com/in", "event_types": event_types},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert not WebhookEndpoint.objects.exists()


def test_update_changes_what_is_given_and_delete_hides_the_endpoint(api):
    created = create_endpoint(api, url="https://hooks.example.com/in")
    path = f"/api/v1/webhooks/endpoints/{created['id']}"

    patched = api.patch(
        path, {"event_types": ["topup.*", "user.created"], "description": "d"}, format="json"
    )
    deleted = api.delete(path)

    assert patched.status_code == 200
    assert patched.json()["event_types"] == ["topup.*", "user.created"]
    assert patched.json()["url"] == "https://hooks.example.com/in"
    assert deleted.status_code == 204
    assert api.get(path).status_code == 404
    assert api.get("/api/v1/webhooks/endpoints").json()["data"] == []
    assert WebhookEndpoint.objects.get(public_id=created["id"]).deleted_at is not None


def test_only_enabled_endpoints_whose_filter_matches_get_a_delivery(
    api, make_endpoint, make_user, marketplace, other_marketplace
):
    users, _ = make_endpoint(marketplace, "https://a.example.com/", ["user.*"])
    exact, _ = make_endpoint(marketplace, "https://b.example.com/", ["user.created"])
    topups, _ = make_endpoint(marketplace, "https://c.example.com/", ["topup.*"])
    off, _ = make_endpoint(marketplace, "https://d.example.com/", ["*"])
    theirs, _ = make_endpoint(other_marketplace, "https://e.example.com/", ["*"])
    api.patch(f"/api/v1/webhooks/endpoints/{off.public_id}", {"enabled": False}, format="json")

    user = make_user(marketplace)

    deliveries = WebhookDelivery.objects.filter(event__aggregate_id=user.public_id)
    assert {d.endpoint_id for d in deliveries} == {users.pk, exact.pk}
    assert {d.event_type for d in deliveries} == {"user.created"}
    assert theirs.pk not in {d.endpoint_id for d in deliveries}
    assert topups.pk not in {d.endpoint_id for d in deliveries}


def test_disabling_fails_pending_deliveries_and_enabling_clears_the_failure(
    api, make_endpoint, make_user, marketplace
):
    endpoint, _ = make_endpoint(marketplace, "https://a.example.com/")
    make_user(marketplace)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since="2020-01-01T00:00:00Z")
    path = f"/api/v1/webhooks/endpoints/{endpoint.public_id}"

    disabled = api.patch(path, {"enabled": False}, format="json").json()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    enabled = api.patch(path, {"enabled": True}, format="json").json()

    assert disabled["enabled"] is False
    assert disabled["disabled_reason"] == "disabled via the API"
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_error.startswith("endpoint disabled")
    assert enabled["enabled"] is True
    assert enabled["failing_since"] is None
    assert enabled["disabled_at"] is None


def test_rotation_signs_with_both_secrets_during_the_overlap(api):
    created = create_endpoint(api, url="https://hooks.example.com/in")
    path = f"/api/v1/webhooks/endpoints/{created['id']}/rotate-secret"

    rotated = api.post(path, {"overlap_seconds": 3600}, format="json").json()

    endpoint = WebhookEndpoint.objects.get(public_id=created["id"])
    now = timezone.now()
    secrets = endpoint_signing_secrets(endpoint, now)
    body = b'{"id":"evt_1"}'
    headers = signed_headers(
        secrets=secrets, msg_id="evt_1", timestamp=int(now.timestamp()), body=body
    )
    assert rotated["secret"] != created["secret"]
    assert sorted(secrets) == sorted([created["secret"], rotated["secret"]])
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (created["secret"], rotated["secret"]):  # a receiver with either verifies
        assert Webhook(secret).verify(body, headers) == {"id": "evt_1"}


def test_after_the_overlap_only_the_new_secret_signs(api):
    created = create_endpoint(api, url="https://hooks.example.com/in")
    path = f"/api/v1/webhooks/endpoints/{created['id']}/rotate-secret"

    rotated = api.post(path, {"overlap_seconds": 0}, format="json").json()

    endpoint = WebhookEndpoint.objects.get(public_id=created["id"])
    assert endpoint_signing_secrets(endpoint, timezone.now()) == [rotated["secret"]]


@pytest.mark.parametrize("overlap", [-1, 7 * 86400 + 1])
def test_rotation_refuses_an_overlap_out_of_range(api, overlap):
    created = create_endpoint(api, url="https://hooks.example.com/in")

    response = api.post(
        f"/api/v1/webhooks/endpoints/{created['id']}/rotate-secret",
        {"overlap_seconds": overlap},
        format="json",
    )

    assert response.status_code == 400
    assert WebhookSecret.objects.filter(endpoint__public_id=created["id"]).count() == 1


def test_ping_makes_a_delivery_for_that_endpoint_only(api, make_endpoint, marketplace):
    endpoint, _ = make_endpoint(marketplace, "https://a.example.com/")
    other, _ = make_endpoint(marketplace, "https://b.example.com/")

    response = api.post(f"/api/v1/webhooks/endpoints/{endpoint.public_id}/ping")

    assert response.status_code == 202
    assert response.json()["event_type"] == "webhook.ping"
    assert WebhookDelivery.objects.get(endpoint=endpoint).event_type == "webhook.ping"
    assert not WebhookDelivery.objects.filter(endpoint=other).exists()


def test_ping_of_a_disabled_endpoint_is_a_conflict(api, make_endpoint, marketplace):
    endpoint, _ = make_endpoint(marketplace, "https://a.example.com/")
    api.patch(f"/api/v1/webhooks/endpoints/{endpoint.public_id}", {"enabled": False}, format="json")

    response = api.post(f"/api/v1/webhooks/endpoints/{endpoint.public_id}/ping")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_STATE"


def test_deliveries_are_written_in_the_events_transaction(make_endpoint, make_user, marketplace):
    make_endpoint(marketplace, "https://a.example.com/")

    seen_inside = []

    def change() -> None:
        with transaction.atomic():
            make_user(marketplace, external_user_id="rolled-back")
            seen_inside.append(WebhookDelivery.objects.count())
            raise RuntimeError("the change fails after its event")

    with pytest.raises(RuntimeError):
        change()

    assert seen_inside == [1]
    assert WebhookDelivery.objects.count() == 0
    assert not Event.objects.filter(type="user.created").exists()


def test_an_internal_event_makes_no_delivery(make_endpoint, marketplace):
    make_endpoint(marketplace, "https://a.example.com/")

    assert deliveries_record(Event(marketplace=None, type="user.created")) == []
