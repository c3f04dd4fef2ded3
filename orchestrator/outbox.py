"""Reading the domain-event outbox in a commit-safe order (SSE streams, event log backfill).

A reader that remembers "the last event I gave out" must never see a new event appear
behind it. Event ids are handed out at INSERT and transactions commit in another order, so
on PostgreSQL the order is (txid, id) — txid being the writing transaction's id (migration
orchestrator 0003) — and only events whose transaction is older than every running one
(`pg_snapshot_xmin(pg_current_snapshot())`) are read. Such events are all committed (or
gone with their rollback), so nothing can later join them. The cost: a transaction that
stays open holds back what is newer than it until it ends.

On SQLite (embedded mode) writers are serialized, so id order is commit order and the
position is (0, id).

A position is a pair (txid, id); (0, 0) is before every event. Events are named to clients
by their public id (`evt_…`), which `position_of` turns back into a position.
"""

from collections.abc import Sequence

from django.db import connection
from django.db.models import BigIntegerField, Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from orchestrator.catalog import patterns_q
from orchestrator.models import Event

Position = tuple[int, int]
START: Position = (0, 0)
_XMIN = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def _settled() -> Q:
    """Events whose transaction is older than every running one (PostgreSQL)."""
    return Q(txid__lt=RawSQL(_XMIN, (), output_field=BigIntegerField()))  # noqa: S611 - constant


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def positioned(queryset: QuerySet[Event]) -> QuerySet[Event]:
    """`queryset` with the `txid` annotation (0 on SQLite)."""
    column = "orchestrator_event.txid" if _postgres() else "0"
    txid = RawSQL(column, (), output_field=BigIntegerField())  # noqa: S611 - constant SQL
    return queryset.annotate(txid=txid)


def position(event: Event) -> Position:
    return (int(getattr(event, "txid", 0)), int(event.pk))


def position_of(*, marketplace_id: int, event_id: str) -> Position | None:
    """The position of one of the marketplace's events, named by its public id."""
    event = (
        positioned(Event.objects.filter(marketplace_id=marketplace_id, public_id=event_id))
        .only("pk")
        .first()
    )
    return position(event) if event is not None else None


def user_q(user_id: str | None) -> Q:
    """Events that concern the user (public id)."""
    if not user_id:
        return Q()
    if _postgres():
        return Q(user_ids__contains=[user_id])
    return Q(user_ids_text__contains=f'"{user_id}"')


def with_user_filter(queryset: QuerySet[Event], user_id: str | None) -> QuerySet[Event]:
    if user_id and not _postgres():
        queryset = queryset.annotate(user_ids_text=Cast("user_ids", TextField()))
    return queryset.filter(user_q(user_id))


def events_after(
    after: Position,
    *,
    marketplace_id: int | None = None,
    patterns: Sequence[str] = (),
    user_id: str | None = None,
    limit: int = 500,
) -> list[Event]:
    """Up to `limit` events after `after`, in commit-safe order, each carrying `txid`.

    With no marketplace, every marketplace's events (internal ones included) are read.
    """
    rows = positioned(Event.objects.all())
    if marketplace_id is not None:
        rows = rows.filter(marketplace_id=marketplace_id)
    rows = with_user_filter(rows.filter(patterns_q(patterns)), user_id)
    txid, pk = after
    if _postgres():
        rows = rows.filter(Q(txid__gt=txid) | Q(txid=txid, pk__gt=pk)).filter(_settled())
        return list(rows.order_by("txid", "pk")[:limit])
    return list(rows.filter(pk__gt=pk).order_by("pk")[:limit])


def head() -> Position:
    """The position of the newest event that is safe to read now (START if none)."""
    rows = positioned(Event.objects.all()).only("pk")
    if _postgres():
        rows = rows.filter(_settled())
        newest = rows.order_by("-txid", "-pk").first()
    else:
        newest = rows.order_by("-pk").first()
    return position(newest) if newest is not None else START
