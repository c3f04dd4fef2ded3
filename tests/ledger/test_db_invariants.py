"""PostgreSQL itself refuses what the services would never write."""

from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from ledger.integrity import ledger_seal
from ledger.models import JournalEntry, Posting
from ledger.services import transfer_post
from tests.ledger.conftest import available, fund, usd

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def entry(buyer, seller):
    fund(buyer, usd("10"))
    return transfer_post(
        source=available(buyer), destination=available(seller), amount=usd("1"), reference="e"
    )


def _sql(statement: str, params: list[Any] | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_entry_inserted_by_raw_sql_fails_at_commit(buyer, seller, marketplace):
    accounts = [available(buyer).pk, available(seller).pk]

    def insert_unbalanced() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_journalentry (public_id, marketplace_id, reference, kind, memo,"
                " metadata, created_at, prev_hash, hash) VALUES ('je_raw', %s, 'raw', 'raw', '',"
                " '{}', now(), '', '') RETURNING id",
                [marketplace.pk],
            )
            entry_id = cursor.fetchone()[0]
            cursor.executemany(
                "INSERT INTO ledger_posting (entry_id, account_id, amount, currency)"
                " VALUES (%s, %s, %s, 'USD')",
                [(entry_id, accounts[0], 5), (entry_id, accounts[1], -4)],
            )
            # Both statements succeeded: the check is deferred to COMMIT, when this block ends.

    with pytest.raises(IntegrityError, match="does not balance"):
        insert_unbalanced()

    assert not JournalEntry.objects.filter(reference="raw").exists()


def test_an_entry_with_one_posting_only_is_refused(buyer, seller, marketplace):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    with pytest.raises(IntegrityError):
        _sql(
            "INSERT INTO ledger_journalentry (public_id, marketplace_id, reference, kind, memo,"
            " metadata, created_at, prev_hash, hash) VALUES ('je_x', %s, 'x', 'x', '', '{}', now(),"
            " '', '')",
            [marketplace.pk],
        )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger_posting SET amount = amount * 2", "DELETE FROM ledger_posting"],
)
def test_postings_cannot_be_updated_or_deleted(entry, statement):
    with pytest.raises(IntegrityError, match="append-only"):
        _sql(statement)

    assert Posting.objects.filter(entry=entry).count() == 2


def test_entries_cannot_be_deleted_or_changed(entry):
    with pytest.raises(IntegrityError):
        _sql("DELETE FROM ledger_journalentry")
    with pytest.raises(IntegrityError, match="immutable"):
        _sql("UPDATE ledger_journalentry SET reference = 'other'")


def test_a_sealed_entry_cannot_be_resealed(entry):
    ledger_seal()

    with pytest.raises(IntegrityError, match="immutable"):
        _sql("UPDATE ledger_journalentry SET hash = repeat('0', 64)")

    assert JournalEntry.objects.get(pk=entry.pk).hash != "0" * 64


def test_a_user_balance_cannot_go_negative_even_by_sql(buyer):
    account = available(buyer)

    with pytest.raises(IntegrityError, match="ledger_account_balance_not_negative"):
        _sql("UPDATE ledger_account SET balance = -1 WHERE id = %s", [account.pk])


def test_references_are_unique_per_marketplace(entry):
    with pytest.raises(IntegrityError):
        _sql(
            "INSERT INTO ledger_journalentry (public_id, marketplace_id, reference, kind, memo,"
            " metadata, created_at, prev_hash, hash) VALUES ('je_dup', %s, 'e', 'x', '', '{}',"
            " now(), '', '')",
            [entry.marketplace_id],
        )
