"""Shared machinery of the escrow services: row locks, moving a state machine with its
audit row and event, the Trustless Work client, and the per-escrow lease.

Every write follows DESIGN.md §5-6: start (a transaction that locks the order, checks its
state and records the intent), call (Trustless Work, in a Celery task, outside any
transaction, under the escrow's lease), confirm or fail (a transaction that locks the order
again, moves the state machines, posts the ledger entry, writes audit rows and events).
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from escrow.errors import OrderNotFoundError
from escrow.events import ORDER_EVENTS, OrderEvent
from escrow.models import Escrow, Order, order_snapshot
from orchestrator.audit import audit_record
from orchestrator.errors import InvalidStateError
from orchestrator.events import publish
from orchestrator.models import Marketplace
from providers.clients.trustless_work import TrustlessWorkClient


def locked_order(pk: int) -> Order:
    """The order row, locked for the rest of the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked_order() must run inside a transaction.")
    return (
        Order.objects.select_for_update(of=("self",))
        .select_related("buyer", "seller", "marketplace")
        .get(pk=pk)
    )


def locked_order_by_id(marketplace: Marketplace, order_id: str) -> Order:
    """The marketplace's order `order_id`, locked (OrderNotFoundError if it has none)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked_order_by_id() must run inside a transaction.")
    order = (
        Order.objects.select_for_update(of=("self",))
        .select_related("buyer", "seller", "marketplace")
        .filter(marketplace=marketplace, public_id=order_id)
        .first()
    )
    if order is None:
        raise OrderNotFoundError("Order not found.", order_id=order_id)
    return order


def require_state(order: Order, *allowed: str, action: str) -> None:
    """409 INVALID_STATE naming the current state, unless the order is in `allowed`."""
    if order.status not in allowed:
        raise InvalidStateError(
            f"An order in {order.status} cannot {action}.",
            order_id=order.public_id,
            current_state=order.status,
            allowed_states=list(allowed),
        )


def move(
    order: Order,
    transition: Callable[..., None],
    *args: Any,
    reason: str = "",
    event: type[OrderEvent] | None = None,
    escrow_id: str | None = None,
    **kwargs: Any,
) -> None:
    """Run an order transition, save, audit it and publish its event (in the caller's
    transaction, the order row locked). `event` overrides the status's own event;
    `escrow_id` saves looking the escrow up when the caller knows it ("" for none)."""
    before = order.status
    transition(*args, **kwargs)
    order.save()
    audit_record(
        action="order.status_changed",
        object_type="order",
        object_id=order.public_id,
        marketplace_id=order.marketplace_id,
        before={"status": before},
        after=order_snapshot(order),
        reason=reason,
    )
    publish_order(order, previous=before, reason=reason, event=event, escrow_id=escrow_id)


def publish_order(
    order: Order,
    *,
    previous: str,
    reason: str = "",
    event: type[OrderEvent] | None = None,
    escrow_id: str | None = None,
) -> None:
    if escrow_id is None:
        escrow_id = (
            Escrow.objects.filter(order=order).values_list("public_id", flat=True).first() or ""
        )
    cls = event or ORDER_EVENTS[order.status]
    publish(
        cls(
            marketplace_id=order.marketplace_id,
            aggregate_id=order.public_id,
            user_ids=(order.buyer.public_id, order.seller.public_id),
            buyer_id=order.buyer.public_id,
            seller_id=order.seller.public_id,
            amount=order.money,
            status=order.status,
            previous_status=previous,
            escrow_id=escrow_id,
            reason=reason,
        )
    )


# --- Trustless Work ----------------------------------------------------------------------------


@functools.cache
def _client(*configuration: object) -> TrustlessWorkClient:
    return TrustlessWorkClient()


def tw_client() -> TrustlessWorkClient:
    """The process's Trustless Work client (one session, one rate budget) for the settings."""
    return _client(
        settings.TRUSTLESS_WORK_BASE_URL,
        settings.TRUSTLESS_WORK_API_KEY,
        settings.STELLAR_NETWORK_PASSPHRASE,
        settings.TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE,
        settings.TRUSTLESS_WORK_CONNECT_TIMEOUT,
        settings.TRUSTLESS_WORK_READ_TIMEOUT,
        tuple(settings.TRUSTLESS_WORK_CONFIRM_DELAYS),
    )


@contextmanager
def lease(escrow_pk: int) -> Iterator[bool]:
    """Hold the escrow's Trustless Work lease for the block; yields whether it was taken.

    One process at a time talks to Trustless Work about an escrow: two deploys racing
    would make two contracts. The lease is a column, not a row lock (the call runs outside
    any transaction), and expires on its own if its holder dies (ESCROW_LEASE_SECONDS,
    longer than the slowest client call with its retries and confirmations).
    """
    now = timezone.now()
    taken = bool(
        Escrow.objects.filter(pk=escrow_pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=settings.ESCROW_LEASE_SECONDS))
    )
    try:
        yield taken
    finally:
        if taken:
            Escrow.objects.filter(pk=escrow_pk).update(lease_until=None)
