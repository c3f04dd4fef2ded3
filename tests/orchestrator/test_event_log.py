"""The event log API (backfill) and the generated event catalog."""

import pytest
from django.core.management import call_command

from orchestrator.models import Event
from orchestrator.outbox import events_after, position_of
from tests.worker import wait_until

pytestmark = pytest.mark.django_db


def test_the_log_lists_the_marketplaces_events_newest_first(
    api, make_user, marketplace, other_marketplace
):
    users = [make_user(marketplace) for _ in range(3)]
    make_user(other_marketplace)

    page = api.get("/api/v1/events/log", {"limit": 2}).json()
    rest = api.get("/api/v1/events/log", {"cursor": page["pagination"]["next_cursor"]}).json()

    ids = [e["aggregate"]["id"] for e in page["data"] + rest["data"]]
    assert ids == [u.public_id for u in reversed(users)]
    assert page["pagination"]["has_more"] is True
    assert rest["pagination"]["has_more"] is False
    assert set(page["data"][0]) == {"id", "type", "created_at", "aggregate", "data"}


def test_the_log_filters_by_type_pattern_and_user(api, make_user, marketplace):
    alice, bob = make_user(marketplace), make_user(marketplace)

    by_user = api.get("/api/v1/events/log", {"user_id": bob.public_id}).json()["data"]
    by_prefix = api.get("/api/v1/events/log", {"types": "user.*"}).json()["data"]
    by_other = api.get("/api/v1/events/log", {"types": "topup.*,hold.placed"}).json()["data"]
    bad = api.get("/api/v1/events/log", {"types": "nonsense"})

    assert [e["aggregate"]["id"] for e in by_user] == [bob.public_id]
    assert {e["aggregate"]["id"] for e in by_prefix} == {alice.public_id, bob.public_id}
    assert by_other == []
    assert bad.status_code == 400


@pytest.mark.postgres
def test_backfill_holds_back_events_of_a_transaction_still_open(api, make_user, marketplace):
    users = [make_user(marketplace) for _ in range(3)]  # in this test's open transaction
    first = Event.objects.get(aggregate_id=users[0].public_id)

    page = api.get("/api/v1/events/log", {"after": first.public_id}).json()

    assert page["data"] == []
    assert page["pagination"] == {"has_more": False, "next_cursor": first.public_id}


@pytest.mark.django_db(transaction=True)
def test_backfill_after_an_event_pages_in_delivery_order(make_client, make_user, make_marketplace):
    marketplace = make_marketplace()
    api = make_client(marketplace)
    users = [make_user(marketplace) for _ in range(5)]
    first = Event.objects.get(aggregate_id=users[0].public_id)

    start = position_of(marketplace_id=marketplace.pk, event_id=first.public_id)
    assert start is not None
    wait_until(lambda: len(events_after(start, marketplace_id=marketplace.pk)) == 4)

    page = api.get("/api/v1/events/log", {"after": first.public_id, "limit": 2}).json()
    rest = api.get(
        "/api/v1/events/log", {"after": page["pagination"]["next_cursor"], "limit": 10}
    ).json()

    assert page["pagination"]["has_more"] is True
    assert rest["pagination"]["has_more"] is False
    ids = [e["aggregate"]["id"] for e in page["data"] + rest["data"]]
    assert ids == [u.public_id for u in users[1:]]


def test_after_refuses_another_marketplaces_event(api, make_user, other_marketplace):
    make_user(other_marketplace)
    theirs = Event.objects.get(marketplace=other_marketplace)

    response = api.get("/api/v1/events/log", {"after": theirs.public_id})

    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {"after": ["Unknown event id."]}


@pytest.mark.django_db(transaction=True)
def test_backfill_sees_committed_events_in_commit_safe_order(make_user, make_marketplace):
    marketplace = make_marketplace()
    users = [make_user(marketplace) for _ in range(4)]
    first = Event.objects.get(aggregate_id=users[0].public_id)

    start = position_of(marketplace_id=marketplace.pk, event_id=first.public_id)
    assert start is not None
    # Settled once every transaction older than theirs has ended (other tests' included).
    wait_until(lambda: len(events_after(start, marketplace_id=marketplace.pk)) == 3)
    rows = events_after(start, marketplace_id=marketplace.pk, patterns=["user.*"])

    assert [e.aggregate_id for e in rows] == [u.public_id for u in users[1:]]


def test_the_committed_event_catalog_is_up_to_date():
    call_command("event_catalog", "--check")
