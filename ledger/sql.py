"""The posting path in hand-written SQL: the statements entry_post runs for every cent.

The ORM's per-statement overhead was most of a transfer's cost, so these few statements are
written by hand, in SQL that PostgreSQL and SQLite (the embedded mode) both accept. Table and
column names come from the models; values are always parameters.
"""

# ruff: noqa: S608 - every interpolated name comes from model metadata, never from input

import random
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection

from ledger.models import SHARDS, Account, AccountShard, JournalEntry, Posting
from orchestrator.db import insert_row

if TYPE_CHECKING:
    from ledger.services import Leg

_ACCOUNT = Account._meta.db_table
_SHARD = AccountShard._meta.db_table
_POSTING = Posting._meta.db_table


def write_entry(
    entry: JournalEntry,
    legs: Sequence["Leg"],
    deltas: dict[int, Decimal],
    locked: dict[int, Decimal],
) -> int | None:
    """Insert the entry, its postings and the balance changes; None if the reference exists."""
    shards = {
        pk: random.randrange(SHARDS)  # noqa: S311 - spreads load, not a secret
        for pk, delta in deltas.items()
        if pk not in locked and delta != 0
    }
    # ON CONFLICT waits for a concurrent insert of the same reference, then yields no row:
    # the caller learns the entry exists without an error or a savepoint.
    entry_id = insert_row(entry, unless_exists=("marketplace_id", "reference"))
    if entry_id is not None:
        _insert_postings(entry_id, legs)
        _apply_deltas(deltas, locked, shards)
    return entry_id


def lock_balances(account_ids: list[int]) -> dict[int, Decimal]:
    """Lock bounded accounts in ascending id order; their balances as of the lock."""
    if not account_ids:
        return {}
    marks = ", ".join(["%s"] * len(account_ids))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""  # SQLite: none
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, balance FROM {_ACCOUNT} WHERE id IN ({marks}) ORDER BY id{lock}",
            account_ids,
        )
        return {int(pk): Decimal(balance) for pk, balance in cursor.fetchall()}


def _insert_postings(entry_id: int, legs: Sequence["Leg"]) -> None:
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(legs))
    params: list[Any] = []
    for leg in legs:
        params += [entry_id, leg.account.pk, leg.amount, leg.account.currency]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_POSTING} (entry_id, account_id, amount, currency) VALUES {rows}",
            params,
        )


def _apply_deltas(
    deltas: dict[int, Decimal], locked: dict[int, Decimal], shards: dict[int, int]
) -> None:
    bounded = {pk: delta for pk, delta in deltas.items() if pk in locked and delta != 0}
    with connection.cursor() as cursor:
        if bounded:
            cases = " ".join(["WHEN %s THEN %s"] * len(bounded))
            marks = ", ".join(["%s"] * len(bounded))
            params: list[Any] = [x for pair in bounded.items() for x in pair]
            cursor.execute(
                f"UPDATE {_ACCOUNT} SET balance = balance + CASE id {cases} END "
                f"WHERE id IN ({marks})",
                [*params, *bounded],
            )
        for pk, shard in shards.items():
            # No lock and no read: an atomic increment of one shard of the system account.
            cursor.execute(
                f"UPDATE {_SHARD} SET balance = balance + %s WHERE account_id = %s AND shard = %s",
                [deltas[pk], pk, shard],
            )
