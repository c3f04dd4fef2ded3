"""Domain events: facts published inside the transaction that made them true.

`publish` writes the event to the outbox table (orchestrator.models.Event) in the
caller's transaction, so no event exists for a rolled-back change and no committed
change lacks its event. It then sends the `domain_event` signal: receivers run inside
the same transaction and may write rows, never call the network. Once that transaction
has committed, `event_committed` is sent: its receivers may call the network (wake SSE
streams, queue deliveries) and need no transaction, so a change that is one statement by
itself (a ledger entry) stays one statement when only they listen.
"""

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from django.db import transaction
from django.dispatch import Signal

from orchestrator.context import current_request_id

if TYPE_CHECKING:
    from orchestrator.models import Event

domain_event = Signal()  # sent with event=<DomainEvent>, record=<Event>, in the transaction
event_committed = Signal()  # sent with record=<Event> after the transaction committed


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Base of every event. Subclasses set `type` ("<entity>.<past participle>")."""

    type: ClassVar[str]
    aggregate_type: ClassVar[str]

    marketplace_id: int | None  # None: internal, never sent to a marketplace
    aggregate_id: str  # public id of the object the event is about
    user_ids: tuple[str, ...] = ()  # public ids of users it concerns (SSE/webhook filters)

    def payload(self) -> dict[str, Any]:
        skip = {"marketplace_id", "user_ids"}
        return {f.name: _render(getattr(self, f.name)) for f in fields(self) if f.name not in skip}


def _render(value: Any) -> Any:
    """JSON-ready form; objects with `as_api()` (Money) render themselves."""
    if hasattr(value, "as_api"):
        return value.as_api()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_render(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _render(item) for key, item in value.items()}
    return value


def publish(event: DomainEvent) -> "Event":
    """Record `event` in the outbox and notify receivers. Call inside the change's transaction."""
    from orchestrator.db import insert_row

    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("publish() must run inside the transaction of the change.")
    record = outbox_record(event)
    insert_row(record)  # every change writes one; Model.save() would cost more than the INSERT
    notify_receivers(event, record)
    return record


def outbox_record(event: DomainEvent) -> "Event":
    """The outbox row for `event`, unsaved.

    publish() inserts it. A service that writes the row in its own statement (the ledger's
    ledger_post_entry() writes the entry and its event in one round trip) builds it here,
    so the row is the same, and calls notify_receivers() once it is written.
    """
    from orchestrator.models import Event  # the kernel stays importable before apps load

    return Event(
        marketplace_id=event.marketplace_id,
        type=event.type,
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        user_ids=list(event.user_ids),
        payload=event.payload(),
        request_id=current_request_id()[:100],
    )


def notify_receivers(event: DomainEvent, record: "Event") -> None:
    """Send `domain_event` for a written outbox row, inside the change's transaction if one is
    open, and `event_committed` once the row is committed (at once if no transaction is
    open: the row was written by a statement that committed by itself)."""
    domain_event.send(sender=type(event), event=event, record=record)
    if not event_committed.has_listeners():
        return
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(partial(_send_committed, type(event), record))
    else:
        _send_committed(type(event), record)


def _send_committed(sender: type[DomainEvent], record: "Event") -> None:
    event_committed.send(sender=sender, record=record)
