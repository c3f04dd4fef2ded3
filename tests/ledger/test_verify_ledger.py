from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from ledger.integrity import ledger_seal, ledger_verify
from ledger.models import ChainHead, JournalEntry
from ledger.services import hold_place, transfer_post
from tests.ledger.conftest import available, fund, usd

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(buyer, seller):
    fund(buyer, usd("100"))
    entries = [
        transfer_post(
            source=available(buyer),
            destination=available(seller),
            amount=usd(str(n)),
            reference=f"t{n}",
        )
        for n in range(1, 5)
    ]
    hold_place(user=buyer, amount=usd("10"), reference="h")
    return entries


def run_verify() -> str:
    out = StringIO()
    call_command("verify_ledger", stdout=out)
    return out.getvalue()


def test_verify_ledger_passes_on_an_honest_ledger_and_seals_the_chain(ledger):
    output = run_verify()

    assert "ledger OK" in output
    sequences = list(JournalEntry.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    assert ChainHead.objects.get().sequence == len(sequences)


def test_cents_that_binary_floats_cannot_hold_verify(buyer, seller):
    # SQLite sums decimals as binary floats: 0.1 + 0.2 - 0.3 is not zero there.
    for n, cents in enumerate(["0.10", "0.20"]):
        fund(buyer, usd(cents), reference=f"f{n}")
    transfer_post(
        source=available(buyer), destination=available(seller), amount=usd("0.30"), reference="t"
    )

    report = ledger_verify()

    assert report.problems == []


def test_sealing_twice_does_not_extend_the_chain(ledger):
    ledger_seal()
    head = ChainHead.objects.get()

    assert ledger_seal() == 0
    assert ChainHead.objects.get().hash == head.hash


@pytest.mark.postgres
def test_tampering_with_an_amount_by_sql_fails_verify_ledger_and_names_the_entry(ledger):
    ledger_seal()
    victim = ledger[2]
    with connection.cursor() as cursor:
        # A superuser can switch triggers off; the chain still gives the change away.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE ledger_posting SET amount = amount * 10 WHERE entry_id = %s", [victim.pk]
        )
        cursor.execute("SET session_replication_role = DEFAULT")

    with pytest.raises(CommandError):
        run_verify()

    problems = ledger_verify().problems
    assert any(victim.public_id in p and "hash does not match" in p for p in problems)
    assert any("stored balance" in p for p in problems)


@pytest.mark.postgres
def test_a_balance_changed_without_postings_fails_verify_ledger(ledger, seller):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_account SET balance = balance + 1 WHERE id = %s", [available(seller).pk]
        )

    problems = ledger_verify().problems

    assert problems == [
        f"account {available(seller).public_id}: stored balance 11.0000000 != sum of postings "
        "10.0000000"
    ]
