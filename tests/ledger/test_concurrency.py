"""Real concurrent connections against PostgreSQL: races the ledger must win."""

from decimal import Decimal

import pytest
from django.db.models import Sum

from ledger.errors import HoldNotActiveError, InsufficientFundsError
from ledger.integrity import ledger_verify
from ledger.models import Account, Hold, JournalEntry
from ledger.selectors import available_balance
from ledger.services import hold_capture, hold_place, system_account, transfer_post
from tests.ledger.conftest import (
    CLEARING,
    available,
    balance,
    fund,
    reserved,
    run_concurrently,
    usd,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_hot_overdraft_race_exactly_as_many_debits_succeed_as_the_balance_allows(buyer, seller):
    fund(buyer, usd("100"))
    source, destination = available(buyer), available(seller)

    results = run_concurrently(
        lambda n: transfer_post(
            source=source, destination=destination, amount=usd("1"), reference=f"debit-{n}"
        ),
        [(n,) for n in range(200)],
    )

    failures = [r for r in results if isinstance(r, Exception)]
    assert len(results) - len(failures) == 100
    assert all(isinstance(f, InsufficientFundsError) for f in failures)
    assert balance(source) == "0"
    assert balance(destination) == "100"
    assert ledger_verify().ok


def test_many_sources_into_one_destination_lose_no_credit(make_user, marketplace, seller):
    sources = [make_user(marketplace) for _ in range(100)]
    for user in sources:
        fund(user, usd("5"))
    destination = available(seller)

    results = run_concurrently(
        lambda user: transfer_post(
            source=available(user),
            destination=destination,
            amount=usd("5"),
            reference=f"in-{user.public_id}",
        ),
        [(user,) for user in sources],
    )

    assert not [r for r in results if isinstance(r, Exception)]
    assert balance(destination) == "500"


def test_opposite_transfers_never_deadlock(buyer, seller):
    fund(buyer, usd("1000"), reference="fa")
    fund(seller, usd("1000"), reference="fb")
    a, b = available(buyer), available(seller)

    results = run_concurrently(
        lambda n: transfer_post(
            source=a if n % 2 else b,
            destination=b if n % 2 else a,
            amount=usd("1"),
            reference=f"x-{n}",
        ),
        [(n,) for n in range(500)],
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    assert balance(a) == "1000"
    assert balance(b) == "1000"
    assert JournalEntry.objects.filter(reference__startswith="x-").count() == 500


def test_six_holds_of_1000_on_5000_exactly_five_succeed(buyer):
    fund(buyer, usd("5000"))

    results = run_concurrently(
        lambda n: hold_place(user=buyer, amount=usd("1000"), reference=f"hold-{n}"),
        [(n,) for n in range(6)],
        workers=6,
    )

    assert sum(isinstance(r, Hold) for r in results) == 5
    assert sum(isinstance(r, InsufficientFundsError) for r in results) == 1
    assert balance(available(buyer)) == "0"
    assert balance(reserved(buyer)) == "5000"
    held = Hold.objects.filter(user=buyer, status=Hold.Status.ACTIVE).aggregate(s=Sum("amount"))[
        "s"
    ]
    assert held == Decimal(5000)


def test_the_same_hold_placed_by_twenty_concurrent_calls_is_placed_once(buyer):
    fund(buyer, usd("100"))

    results = run_concurrently(
        lambda n: hold_place(user=buyer, amount=usd("30"), reference="same"),
        [(n,) for n in range(20)],
        workers=10,
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    assert len({r.pk for r in results}) == 1
    assert Hold.objects.count() == 1
    assert balance(available(buyer)) == "70"
    assert balance(reserved(buyer)) == "30"


def test_a_hundred_concurrent_captures_of_one_hold_apply_exactly_once(buyer, marketplace):
    fund(buyer, usd("300"))
    hold = hold_place(user=buyer, amount=usd("300"), reference="h")
    escrow = system_account(marketplace_id=marketplace.pk, code="escrow:ord_1", currency="USD")

    results = run_concurrently(
        lambda n: hold_capture(hold=hold, destination=escrow, reference=f"capture-{n}"),
        [(n,) for n in range(100)],
    )

    assert sum(isinstance(r, Hold) for r in results) == 1
    assert sum(isinstance(r, HoldNotActiveError) for r in results) == 99
    assert available_balance(account=escrow) == usd("300")
    assert balance(reserved(buyer)) == "0"


def test_concurrent_credits_from_one_system_account_need_no_lock_and_lose_nothing(
    make_user, marketplace
):
    users = [make_user(marketplace) for _ in range(50)]

    results = run_concurrently(
        lambda n: fund(users[n % 50], usd("2"), reference=f"topup-{n}"), [(n,) for n in range(200)]
    )

    assert not [r for r in results if isinstance(r, Exception)]
    clearing = system_account(marketplace_id=marketplace.pk, code=CLEARING, currency="USD")
    assert available_balance(account=clearing) == usd("-400")
    total = Account.objects.filter(user__in=users).aggregate(s=Sum("balance"))["s"]
    assert total == Decimal(400)
    assert ledger_verify().ok


def test_the_same_reference_posted_concurrently_moves_money_once(buyer, seller):
    fund(buyer, usd("100"))
    source, destination = available(buyer), available(seller)

    results = run_concurrently(
        lambda _: transfer_post(
            source=source, destination=destination, amount=usd("10"), reference="once"
        ),
        [(n,) for n in range(20)],
        workers=20,
    )

    assert len({r.pk for r in results}) == 1
    assert balance(destination) == "10"
