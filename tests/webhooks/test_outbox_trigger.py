"""PostgreSQL writes each event's outbound deliveries in the statement that inserts it
(webhooks migration 0003): the same endpoints the Python rule (type_matches) selects."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from orchestrator.catalog import type_matches
from orchestrator.models import Event
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.outbound import deliveries_dispatch, endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

TYPES = ["order.released", "order.created", "orderly.created", "topup.succeeded", "user.created"]


def _endpoint(marketplace: Any, patterns: list[str], **fields: Any) -> WebhookEndpoint:
    # Patterns are set directly: the trigger must follow type_matches for any stored list,
    # including the empty one and types the catalog does not (yet) hold.
    endpoint, _ = endpoint_create(
        marketplace=marketplace, url="http://127.0.0.1:9/hook", event_types=["*"]
    )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(event_types=patterns, **fields)
    endpoint.refresh_from_db()
    return endpoint


def _insert(marketplace_id: int | None, event_type: str) -> Event:
    return Event.objects.create(
        marketplace_id=marketplace_id,
        type=event_type,
        aggregate_type=event_type.split(".")[0],
        aggregate_id="agg_1",
        user_ids=[],
        payload={},
    )


def test_the_trigger_selects_what_type_matches_selects(marketplace, other_marketplace):
    selecting = [
        _endpoint(marketplace, ["*"]),
        _endpoint(marketplace, []),
        _endpoint(marketplace, ["order.*"]),
        _endpoint(marketplace, ["order.released", "user.created"]),
        _endpoint(marketplace, ["topup.*", "orderly.created"]),
    ]
    _endpoint(marketplace, ["*"], is_enabled=False)
    _endpoint(marketplace, ["*"], deleted_at=timezone.now())
    _endpoint(other_marketplace, ["*"])

    for event_type in TYPES:
        event = _insert(marketplace.pk, event_type)
        deliveries = WebhookDelivery.objects.filter(event=event)
        written = set(deliveries.values_list("endpoint", flat=True))
        expected = {e.pk for e in selecting if type_matches(e.event_types, event_type)}
        assert written == expected, event_type
        assert set(deliveries.values_list("event_type", flat=True)) <= {event_type}


def test_internal_events_have_no_deliveries(marketplace):
    _endpoint(marketplace, ["*"])
    event = _insert(None, "user.created")
    assert not WebhookDelivery.objects.filter(event=event).exists()


def test_written_deliveries_are_pending_unclaimed_with_public_ids(marketplace):
    for _ in range(3):
        _endpoint(marketplace, ["*"])
    event = _insert(marketplace.pk, "order.created")
    deliveries = list(WebhookDelivery.objects.filter(event=event))
    assert len(deliveries) == 3
    assert all(re.fullmatch(r"dlv_[A-Za-z0-9]{24}", d.public_id) for d in deliveries)
    assert len({d.public_id for d in deliveries}) == 3
    assert all(d.status == WebhookDelivery.Status.PENDING for d in deliveries)
    assert all(d.locked_until is None and d.claim_token == "" for d in deliveries)
    # Due at the event's time, which the application's clock wrote (not the database's).
    assert all(d.next_attempt_at == event.created_at for d in deliveries)
    assert all(d.created_at == event.created_at for d in deliveries)


def test_deliveries_follow_the_applications_clock_not_the_databases(marketplace):
    _endpoint(marketplace, ["*"])
    past = timezone.now() - timedelta(days=400)
    event = Event.objects.create(
        marketplace_id=marketplace.pk,
        type="order.created",
        aggregate_type="order",
        aggregate_id="agg_1",
        user_ids=[],
        payload={},
        created_at=past,
    )

    assert WebhookDelivery.objects.get(event=event).next_attempt_at == past


def test_dispatch_sends_an_events_deliveries_once(marketplace, monkeypatch):
    from webhooks import outbound

    _endpoint(marketplace, ["*"])
    _endpoint(marketplace, ["order.*"])
    event = _insert(marketplace.pk, "order.created")
    _insert(marketplace.pk, "order.created")  # another event's delivery stays for the sweeper
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(
        outbound, "delivery_attempt", lambda **kwargs: sent.append((kwargs["delivery_id"], ""))
    )

    assert deliveries_dispatch(event_id=event.pk) == 2
    assert {pk for pk, _ in sent} == set(
        WebhookDelivery.objects.filter(event=event).values_list("pk", flat=True)
    )
    # Claimed now: a second dispatch (a duplicate task) finds nothing left to send.
    assert deliveries_dispatch(event_id=event.pk) == 0
