from decimal import Decimal

import pytest

from ledger.errors import InsufficientFundsError, ReferenceReusedError, UnbalancedEntryError
from ledger.models import Account, JournalEntry, Posting
from ledger.selectors import available_balance
from ledger.services import Leg, entry_post, system_account, transfer_post
from orchestrator.models import Event
from tests.ledger.conftest import CLEARING, available, balance, fund, usd

pytestmark = pytest.mark.django_db


def test_transfer_post_moves_money_between_users(buyer, seller):
    fund(buyer, usd("100.00"))

    transfer_post(
        source=available(buyer), destination=available(seller), amount=usd("30.25"), reference="t1"
    )

    assert balance(available(buyer)) == "69.75"
    assert balance(available(seller)) == "30.25"


def test_entry_post_with_a_known_reference_returns_the_first_entry_and_moves_nothing(buyer, seller):
    fund(buyer, usd("100.00"))
    source, destination = available(buyer), available(seller)

    first = transfer_post(source=source, destination=destination, amount=usd("10"), reference="r")
    again = transfer_post(source=source, destination=destination, amount=usd("10"), reference="r")

    assert again.pk == first.pk
    assert balance(source) == "90"
    assert Posting.objects.filter(entry=first).count() == 2
    assert Event.objects.filter(aggregate_id=first.public_id).count() == 1


def test_entry_post_refuses_a_known_reference_with_other_postings(buyer, seller):
    fund(buyer, usd("100.00"))
    transfer_post(
        source=available(buyer), destination=available(seller), amount=usd("10"), reference="r"
    )

    with pytest.raises(ReferenceReusedError):
        transfer_post(
            source=available(buyer), destination=available(seller), amount=usd("11"), reference="r"
        )

    assert balance(available(buyer)) == "90"


def test_entry_post_refuses_an_overdraft_with_available_and_requested(buyer, seller):
    fund(buyer, usd("5.00"))

    with pytest.raises(InsufficientFundsError) as error:
        transfer_post(
            source=available(buyer),
            destination=available(seller),
            amount=usd("5.01"),
            reference="x",
        )

    assert error.value.details["available"] == "5.00"
    assert error.value.details["requested"] == "5.01"
    assert not JournalEntry.objects.filter(reference="x").exists()
    assert balance(available(buyer)) == "5"


@pytest.mark.parametrize(
    "amounts", [[Decimal("1"), Decimal("-0.99")], [Decimal("1")], [Decimal("0"), Decimal("0")]]
)
def test_entry_post_refuses_unbalanced_or_empty_postings(buyer, seller, amounts):
    accounts = [available(buyer), available(seller)]

    with pytest.raises(UnbalancedEntryError):
        entry_post(
            marketplace_id=buyer.marketplace_id,
            reference="bad",
            kind="test",
            legs=[Leg(account, amount) for account, amount in zip(accounts, amounts, strict=False)],
        )

    assert not JournalEntry.objects.filter(reference="bad").exists()


def test_entry_post_refuses_accounts_of_another_marketplace(buyer, other_marketplace, make_user):
    stranger = make_user(other_marketplace)
    fund(buyer, usd("10"))

    with pytest.raises(UnbalancedEntryError):
        transfer_post(
            source=available(buyer), destination=available(stranger), amount=usd("1"), reference="x"
        )


def test_three_leg_entry_is_all_or_nothing(buyer, seller):
    fund(buyer, usd("10.00"))
    fees = system_account(marketplace_id=buyer.marketplace_id, code="platform_fees", currency="USD")

    with pytest.raises(InsufficientFundsError):
        entry_post(
            marketplace_id=buyer.marketplace_id,
            reference="settle",
            kind="release",
            legs=[
                Leg(available(buyer), Decimal("-10.01")),
                Leg(available(seller), Decimal("9.51")),
                Leg(fees, Decimal("0.50")),
            ],
        )

    assert balance(available(seller)) == "0"
    assert available_balance(account=fees) == usd("0")


def test_system_accounts_may_go_negative_and_sum_their_shards(buyer):
    fund(buyer, usd("7.00"), reference="a")
    fund(buyer, usd("3.00"), reference="b")

    clearing = system_account(marketplace_id=buyer.marketplace_id, code=CLEARING, currency="USD")

    assert available_balance(account=clearing) == usd("-10.00")
    assert Account.objects.get(pk=clearing.pk).balance == 0  # kept in shards, not on the row


def test_balance_updated_event_names_the_users_and_amounts(buyer, seller):
    fund(buyer, usd("10.00"))

    entry = transfer_post(
        source=available(buyer), destination=available(seller), amount=usd("2.50"), reference="e"
    )

    event = Event.objects.get(aggregate_id=entry.public_id)
    assert event.type == "balance.updated"
    assert event.user_ids == [buyer.public_id, seller.public_id]
    assert {
        "user_id": seller.public_id,
        "account": "available",
        "amount": "2.50",
        "currency": "USD",
    } in event.payload["changes"]


@pytest.mark.parametrize("parts", [["128.57"], ["0.29"], ["1234567.89"], ["0.70", "0.10"]])
def test_a_whole_balance_can_be_spent(buyer, seller, parts):
    # Found by the fault simulation on SQLite, which keeps decimals as binary floats: read
    # back as Decimal(128.57) = 128.5699999..., the balance looked short of itself; and
    # 0.70 + 0.10 - 0.80 added as floats is below zero, which the CHECK refused.
    for n, amount in enumerate(parts):
        fund(buyer, usd(amount), reference=f"f{n}")
    source = available(buyer)
    whole = sum((usd(amount) for amount in parts), usd("0"))

    transfer_post(source=source, destination=available(seller), amount=whole, reference="t")

    assert balance(source) == "0"
