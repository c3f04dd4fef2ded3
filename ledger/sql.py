"""The posting path in hand-written SQL: the statements entry_post runs for every cent.

On PostgreSQL (the system of record) one entry is one statement: ledger_post_entry(), the
server-side function of migration 0003, locks, checks funds, and writes the entry, its
postings, the balance changes and the outbox event. Sent as five statements inside
BEGIN/COMMIT, each was a network round trip plus driver and Django work: about 1.35 ms of
client CPU per transfer against about 0.45 ms now, on a machine where the client and the
database share two cores.

SQLite (the embedded first-run mode) has no functions and no row locks; it runs the same
steps as separate statements, in SQL both databases accept. Table and column names come
from the models; values are always parameters.
"""

# ruff: noqa: S608 - every interpolated name comes from model metadata, never from input

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from ledger.models import SHARDS, Account, AccountShard, JournalEntry, Posting
from ledger.money import AMOUNT_DECIMAL_PLACES, AMOUNT_QUANTUM
from orchestrator.db import insert_row

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from ledger.services import Leg
    from orchestrator.models import Event

_ACCOUNT = Account._meta.db_table
_SHARD = AccountShard._meta.db_table
_POSTING = Posting._meta.db_table
_PLACES = AMOUNT_DECIMAL_PLACES

# Casts pin each parameter's type, so the call resolves to the one function whatever
# Python types the values have (an empty memo, small ids, an int amount).
_POST_ENTRY = (
    "SELECT status, entry_id, event_id, short_account, short_balance FROM ledger_post_entry("
    "%s::bigint, %s::text, %s::text, %s::text, %s::text, %s::jsonb, %s::timestamptz,"
    " %s::bigint[], %s::numeric[], %s::text[],"
    " %s::text, %s::text, %s::text, %s::text, %s::jsonb, %s::jsonb, %s::text, %s::timestamptz)"
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What posting one entry did. Only "posted" wrote anything."""

    status: Literal["posted", "exists", "short"]
    # "short": the first account (in leg order) that would go below zero, and its balance
    # under the lock.
    short_account: int | None = None
    short_balance: Decimal | None = None


def posts_in_one_statement() -> bool:
    """True if post_entry is one statement, atomic by itself without an open transaction."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def post_entry(entry: JournalEntry, legs: Sequence["Leg"], event: "Event") -> Outcome:
    """Lock the bounded accounts in ascending id order, check funds under the lock, then write
    `entry` (unless its reference exists), its postings, the balance changes and `event`.

    Sets the pks of `entry` and `event` when posted. Unless posts_in_one_statement(), call
    it inside a transaction.
    """
    db = connections[DEFAULT_DB_ALIAS]  # one lookup; each `connection.x` is a thread-local one
    if db.vendor == "postgresql":
        return _post_entry_function(db, entry, legs, event)
    return _post_entry_statements(
        entry, legs, event, has_row_locks=db.features.has_select_for_update
    )


def _post_entry_function(
    db: "BaseDatabaseWrapper", entry: JournalEntry, legs: Sequence["Leg"], event: "Event"
) -> Outcome:
    params: list[Any] = [
        entry.marketplace_id,
        entry.public_id,
        entry.reference,
        entry.kind,
        entry.memo,
        json.dumps(entry.metadata),
        entry.created_at,
        [leg.account.pk for leg in legs],
        [leg.amount for leg in legs],
        [leg.account.currency for leg in legs],
        event.public_id,
        event.type,
        event.aggregate_type,
        event.aggregate_id,
        json.dumps(event.user_ids),
        json.dumps(event.payload, cls=DjangoJSONEncoder),
        event.request_id,
        event.created_at,
    ]
    with _server_bound_cursor(db) as cursor:
        cursor.execute(_POST_ENTRY, params)
        status, entry_id, event_id, short_account, short_balance = cursor.fetchone()
    if status == "posted":
        _saved(entry, entry_id, db)
        _saved(event, event_id, db)
    return Outcome(status, short_account, short_balance)


def _server_bound_cursor(db: "BaseDatabaseWrapper") -> CursorWrapper:
    """A Django cursor whose parameters travel apart from the SQL (server-side binding).

    Django's psycopg cursor binds client-side: Python renders every value (here arrays and
    JSON) as a literal inside the SQL text and the server parses it back, which for this one
    statement of every transfer was a measurable share of both sides' work. Wrapped as
    connection.cursor() wraps its own: errors translated, queries logged under DEBUG and
    CaptureQueriesContext, execute wrappers applied. Being server-bound, the statement is
    also prepared once per connection (settings: DATABASE_PREPARE_THRESHOLD), so the server
    stops parsing and planning it on every transfer.
    """
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    with db.wrap_database_errors:
        cursor = psycopg.Cursor(db.connection)
    return _DebugCursor(cursor, db) if db.queries_logged else CursorWrapper(cursor, db)


class _DebugCursor(CursorDebugWrapper):
    """Logs the statement as written: psycopg keeps no text of a prepared one to show."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)


def _saved(instance: "JournalEntry | Event", pk: int, db: "BaseDatabaseWrapper") -> None:
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = db.alias


# --- The same steps as separate statements (SQLite) --------------------------------------------


def _post_entry_statements(
    entry: JournalEntry, legs: Sequence["Leg"], event: "Event", *, has_row_locks: bool
) -> Outcome:
    deltas: dict[int, Decimal] = defaultdict(Decimal)
    for leg in legs:
        deltas[leg.account.pk] += leg.amount
    locked = _lock_balances(
        sorted({leg.account.pk for leg in legs if leg.account.is_bounded}), has_row_locks
    )
    short = next(
        (
            leg
            for leg in legs
            if leg.account.pk in locked and locked[leg.account.pk] + deltas[leg.account.pk] < 0
        ),
        None,
    )
    if short is not None:
        exists = JournalEntry.objects.filter(
            marketplace_id=entry.marketplace_id, reference=entry.reference
        ).exists()
        if exists:
            return Outcome("exists")
        return Outcome("short", short.account.pk, locked[short.account.pk])
    # ON CONFLICT waits for a concurrent insert of the same reference, then yields no row:
    # the caller learns the entry exists without an error or a savepoint.
    if insert_row(entry, unless_exists=("marketplace_id", "reference")) is None:
        return Outcome("exists")
    _insert_postings(entry.pk, legs)
    _apply_deltas(deltas, locked)
    insert_row(event)
    return Outcome("posted")


def _lock_balances(account_ids: list[int], has_row_locks: bool) -> dict[int, Decimal]:
    """Lock bounded accounts in ascending id order; their balances as of the lock.

    SQLite keeps decimals as binary floats: 128.57 comes back as the float nearest to it,
    which as a Decimal is 128.5699999..., short of itself. The balance is the float's
    shortest repr rounded to the ledger's places, which is what was stored.
    """
    if not account_ids:
        return {}
    marks = ", ".join(["%s"] * len(account_ids))
    lock = " FOR UPDATE" if has_row_locks else ""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            f"SELECT id, balance FROM {_ACCOUNT} WHERE id IN ({marks}) ORDER BY id{lock}",
            account_ids,
        )
        return {
            int(pk): Decimal(str(balance)).quantize(AMOUNT_QUANTUM)
            for pk, balance in cursor.fetchall()
        }


def _insert_postings(entry_id: int, legs: Sequence["Leg"]) -> None:
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(legs))
    params: list[Any] = []
    for leg in legs:
        params += [entry_id, leg.account.pk, leg.amount, leg.account.currency]
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_POSTING} (entry_id, account_id, amount, currency) VALUES {rows}",
            params,
        )


def _apply_deltas(deltas: dict[int, Decimal], locked: dict[int, Decimal]) -> None:
    """Add each delta. The sums are rounded to the ledger's places, so that SQLite's binary
    floats neither drift nor dip below zero (0.70 + 0.10 - 0.80 is -1.1E-16 there)."""
    bounded = {pk: delta for pk, delta in deltas.items() if pk in locked and delta != 0}
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        if bounded:
            cases = " ".join(["WHEN %s THEN %s"] * len(bounded))
            marks = ", ".join(["%s"] * len(bounded))
            params: list[Any] = [x for pair in bounded.items() for x in pair]
            cursor.execute(
                f"UPDATE {_ACCOUNT} SET balance = ROUND(balance + CASE id {cases} END, {_PLACES}) "
                f"WHERE id IN ({marks})",
                [*params, *bounded],
            )
        for pk, delta in deltas.items():
            if pk in locked or delta == 0:
                continue
            # No lock and no read: an atomic increment of one shard of the system account.
            cursor.execute(
                f"UPDATE {_SHARD} SET balance = ROUND(balance + %s, {_PLACES}) "
                "WHERE account_id = %s AND shard = %s",
                [delta, pk, random.randrange(SHARDS)],  # noqa: S311 - spreads load, not a secret
            )
