"""The posting path itself: one statement on PostgreSQL, and the cases it must tell apart."""

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from ledger.errors import InsufficientFundsError
from ledger.models import SHARDS, Account, AccountShard, JournalEntry
from ledger.services import Leg, entry_post, system_account, transfer_post
from orchestrator.events import domain_event, event_committed
from orchestrator.models import Event
from tests.ledger.conftest import CLEARING, available, balance, fund, usd
from webhooks.models import WebhookDelivery
from webhooks.outbound import endpoint_create, marketplace_has_endpoints
from webhooks.tasks import delivery_dispatch

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.mark.django_db(transaction=True)
def test_a_transfer_outside_a_transaction_is_one_statement(buyer, seller, settings, monkeypatch):
    settings.LEDGER_SEAL_ON_COMMIT = False  # sealing is its own transaction, after this one
    fund(buyer, usd("10"))
    source, destination = available(buyer), available(seller)
    endpoint, _ = endpoint_create(
        marketplace=buyer.marketplace, url="http://127.0.0.1:9/hook", event_types=["*"]
    )
    assert marketplace_has_endpoints(buyer.marketplace_id)  # the index is read before, once
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(delivery_dispatch, "delay", lambda **kwargs: queued.append(kwargs))

    with CaptureQueriesContext(connection) as queries:
        entry = transfer_post(
            source=source, destination=destination, amount=usd("1"), reference="t"
        )

    # Lock, funds check, entry, postings, balances, outbox event and (by the outbox trigger)
    # the webhook delivery: one statement, which outside a transaction commits by itself.
    assert [q["sql"][:24] for q in queries.captured_queries] == ["SELECT status, entry_id,"]
    event = Event.objects.get(aggregate_id=entry.public_id)
    deliveries = WebhookDelivery.objects.filter(event=event)
    assert [d.endpoint_id for d in deliveries] == [endpoint.pk]
    # After that commit, the delivery's dispatch was queued once.
    assert queued == [{"event_id": event.pk}]
    assert balance(destination) == "1"
    assert balance(source) == "9"


@pytest.mark.django_db(transaction=True)
def test_committed_receivers_run_after_the_callers_commit(buyer, seller):
    fund(buyer, usd("10"))
    seen: list[tuple[bool, bool]] = []

    def receiver(record: Event, **kwargs: Any) -> None:
        seen.append((connection.in_atomic_block, Event.objects.filter(pk=record.pk).exists()))

    event_committed.connect(receiver)
    try:
        with transaction.atomic():
            transfer_post(
                source=available(buyer),
                destination=available(seller),
                amount=usd("1"),
                reference="t",
            )
            assert seen == []  # not before the commit
        transfer_post(
            source=available(buyer), destination=available(seller), amount=usd("1"), reference="u"
        )
    finally:
        event_committed.disconnect(receiver)

    assert seen == [(False, True), (False, True)]


@pytest.mark.django_db(transaction=True)
def test_domain_event_receivers_run_inside_the_posting_transaction(buyer, seller):
    fund(buyer, usd("10"))
    seen: list[tuple[bool, bool]] = []

    def receiver(record: Event, **kwargs: Any) -> None:
        seen.append((connection.in_atomic_block, Event.objects.filter(pk=record.pk).exists()))

    domain_event.connect(receiver)
    try:
        transfer_post(
            source=available(buyer), destination=available(seller), amount=usd("1"), reference="t"
        )
    finally:
        domain_event.disconnect(receiver)

    assert seen == [(True, True)]


def test_a_retry_after_the_money_moved_on_returns_the_entry(buyer, seller):
    fund(buyer, usd("10"))
    source, destination = available(buyer), available(seller)
    first = transfer_post(source=source, destination=destination, amount=usd("10"), reference="r")

    again = transfer_post(source=source, destination=destination, amount=usd("10"), reference="r")

    assert again.pk == first.pk
    assert balance(source) == "0"


def test_an_overdraft_names_the_first_short_account_in_leg_order(make_user, marketplace):
    a, b, c = (make_user(marketplace) for _ in range(3))
    fund(a, usd("1"))
    fund(b, usd("1"))

    with pytest.raises(InsufficientFundsError) as error:
        entry_post(
            marketplace_id=marketplace.pk,
            reference="x",
            kind="test",
            legs=[
                Leg(available(b), Decimal("-3")),
                Leg(available(a), Decimal("-2")),
                Leg(available(c), Decimal("5")),
            ],
        )

    assert error.value.details["account_id"] == available(b).public_id
    assert error.value.details["available"] == "1.00"
    assert error.value.details["requested"] == "3.00"
    assert not JournalEntry.objects.filter(reference="x").exists()


def test_a_system_account_delta_lands_on_exactly_one_shard(buyer):
    fund(buyer, usd("7"))

    clearing = system_account(marketplace_id=buyer.marketplace_id, code=CLEARING, currency="USD")
    changed = AccountShard.objects.filter(account=clearing).exclude(balance=0)
    assert [shard.balance for shard in changed] == [Decimal("-7")]


def test_a_system_account_without_shards_is_refused_not_lost(buyer, marketplace):
    orphan = Account.objects.create(
        marketplace=marketplace,
        kind=Account.Kind.SYSTEM,
        code="orphan",
        currency="USD",
        allow_negative=True,
    )

    with pytest.raises(IntegrityError, match="no balance shards"):
        transfer_post(source=orphan, destination=available(buyer), amount=usd("1"), reference="o")


@pytest.mark.django_db(transaction=True)
def test_a_busy_system_account_shard_is_skipped_not_waited_for(buyer):
    clearing = system_account(marketplace_id=buyer.marketplace_id, code=CLEARING, currency="USD")
    held, release = threading.Event(), threading.Event()

    def hold_all_shards_but_one() -> None:
        try:
            with transaction.atomic():
                list(
                    AccountShard.objects.select_for_update()
                    .filter(account=clearing)
                    .exclude(shard=SHARDS - 1)
                )
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_all_shards_but_one)
    holder.start()
    try:
        assert held.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # waiting on a held shard would fail
        fund(buyer, usd("3"))
    finally:
        release.set()
        holder.join()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    shard = AccountShard.objects.get(account=clearing, shard=SHARDS - 1)
    assert shard.balance == Decimal("-3")
