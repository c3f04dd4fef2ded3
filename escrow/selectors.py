"""Reads of orders, milestones and disputes, always scoped by the caller's marketplace, and
the order timeline the API and the admin show."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet

from escrow.errors import DisputeNotFoundError, MilestoneNotFoundError, OrderNotFoundError
from escrow.models import ChainStep, Dispute, Escrow, Milestone, Order
from ledger.models import JournalEntry, Posting
from ledger.money import Money
from orchestrator.models import AuditLog, Event, Marketplace, MarketplaceUser
from orchestrator.selectors import UserNotFoundError, filtered
from providers.models import ProviderCall


def _orders() -> QuerySet[Order]:
    return Order.objects.select_related("buyer", "seller", "escrow").prefetch_related(
        Prefetch("milestones", queryset=Milestone.objects.order_by("index")),
        Prefetch("disputes", queryset=Dispute.objects.order_by("-id")),
    )


def order_get(*, marketplace: Marketplace, order_id: str) -> Order:
    order = _orders().filter(marketplace=marketplace, public_id=order_id).first()
    if order is None:
        raise OrderNotFoundError("Order not found.", order_id=order_id)
    return order


def order_ref(*, marketplace: Marketplace, order_id: str) -> Order:
    """The order's row alone (for a service that locks and reads it again)."""
    order = Order.objects.filter(marketplace=marketplace, public_id=order_id).only("pk").first()
    if order is None:
        raise OrderNotFoundError("Order not found.", order_id=order_id)
    return order


def users_get(*, marketplace: Marketplace, user_ids: list[str]) -> list[MarketplaceUser]:
    """The users, in the order asked, in one query; UserNotFoundError names the first missing."""
    found = {
        user.public_id: user
        for user in MarketplaceUser.objects.filter(marketplace=marketplace, public_id__in=user_ids)
    }
    for user_id in user_ids:
        if user_id not in found:
            raise UserNotFoundError("User not found.", user_id=user_id)
    return [found[user_id] for user_id in user_ids]


def order_list(
    *,
    marketplace: Marketplace,
    status: str | None = None,
    buyer_id: str | None = None,
    seller_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Order]:
    return filtered(
        _orders().filter(marketplace=marketplace),
        status=status,
        buyer__public_id=buyer_id,
        seller__public_id=seller_id,
        created_at__gte=created_after,
        created_at__lt=created_before,
    )


def milestone_get(*, order: Order, ref: str) -> Milestone:
    milestone = Milestone.objects.filter(order=order, ref=ref).first()
    if milestone is None:
        raise MilestoneNotFoundError("Milestone not found.", order_id=order.public_id, ref=ref)
    return milestone


def open_dispute(order: Order) -> Dispute | None:
    return Dispute.objects.filter(order=order).exclude(status=Dispute.Status.RESOLVED).first()


def _disputes() -> QuerySet[Dispute]:
    return Dispute.objects.select_related("order", "order__buyer", "order__seller")


def dispute_get(*, marketplace: Marketplace, dispute_id: str) -> Dispute:
    dispute = _disputes().filter(marketplace=marketplace, public_id=dispute_id).first()
    if dispute is None:
        raise DisputeNotFoundError("Dispute not found.", dispute_id=dispute_id)
    return dispute


def dispute_list(
    *,
    marketplace: Marketplace,
    status: str | None = None,
    order_id: str | None = None,
    opened_by: str | None = None,
) -> QuerySet[Dispute]:
    return filtered(
        _disputes().filter(marketplace=marketplace),
        status=status,
        order__public_id=order_id,
        opened_by=opened_by,
    )


# --- Timeline ----------------------------------------------------------------------------------


def _references(order_id: str, milestone_refs: list[str]) -> list[str]:
    """Every ledger reference an order's entries can have (escrow.services.postings): exact
    values, so the lookup uses the (marketplace, reference) unique index."""
    base = f"order:{order_id}"
    found = [f"hold:{base}:place", f"{base}:cancel", f"{base}:escrow_funded"]
    found += [f"{base}:escrow_funded:usdc"]
    for kind in ("release", "refund", "resolution"):
        found.append(f"{base}:{kind}")
        found += [f"{base}:{kind}:{ref}" for ref in milestone_refs]
    return found


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str  # "transition", "event", "ledger", "chain_step", "provider_call", "webhook"
    title: str
    details: dict[str, Any]
    # The row it comes from ("app_label.model", pk), for the back-office to link to it.
    source: tuple[str, int] | None = None


def order_timeline(*, order: Order, internal: bool = False) -> list[TimelineItem]:
    """Everything that happened to an order, oldest first: status changes (audit rows),
    domain events, ledger entries and the chain steps (with their transaction hashes).

    `internal` (the back-office) adds the provider calls made about the order, its escrow
    or its contract (by their reference), which the marketplace's API never shows.
    """
    escrow = Escrow.objects.filter(order=order).first()
    refs = list(Milestone.objects.filter(order=order).values_list("ref", "public_id"))
    ids = [order.public_id, *(public_id for _, public_id in refs)]
    ids += list(Dispute.objects.filter(order=order).values_list("public_id", flat=True))
    if escrow is not None:
        ids.append(escrow.public_id)
    items = [
        *_audit_items(ids),
        *_event_items(ids),
        *_ledger_items(order, [ref for ref, _ in refs]),
    ]
    if escrow is not None:
        items += _chain_step_items(escrow)
    if internal:
        references = [order.public_id]
        if escrow is not None:
            # A deploy's submission names no contract yet: it is recorded under its tx hash.
            hashes = ChainStep.objects.filter(escrow=escrow).exclude(tx_hash="")
            references += [escrow.public_id, escrow.contract_id]
            references += hashes.values_list("tx_hash", flat=True)
        items += _provider_call_items([r for r in references if r])
    items.sort(key=lambda item: item.at)
    return items


def _audit_items(ids: list[str]) -> list[TimelineItem]:
    return [
        TimelineItem(
            row.created_at,
            "transition",
            row.action,
            {
                "object": row.object_id,
                "before": row.before,
                "after": row.after,
                "actor": f"{row.actor_kind}:{row.actor_id}",
                "reason": row.reason,
            },
            ("orchestrator.auditlog", row.pk),
        )
        for row in AuditLog.objects.filter(object_id__in=ids).order_by("id")
    ]


def _event_items(ids: list[str]) -> list[TimelineItem]:
    return [
        TimelineItem(
            event.created_at, "event", event.type, event.payload, ("orchestrator.event", event.pk)
        )
        for event in Event.objects.filter(aggregate_id__in=ids).order_by("id")
    ]


def _ledger_items(order: Order, milestone_refs: list[str]) -> list[TimelineItem]:
    entries = JournalEntry.objects.filter(
        marketplace_id=order.marketplace_id,
        reference__in=_references(order.public_id, milestone_refs),
    ).prefetch_related(
        Prefetch("postings", queryset=Posting.objects.select_related("account").order_by("id"))
    )
    return [
        TimelineItem(
            entry.created_at,
            "ledger",
            entry.reference,
            {
                "kind": entry.kind,
                "entry": entry.public_id,
                "postings": [
                    {
                        "account": p.account.code or f"{p.account.user_public_id}.{p.account.kind}",
                        "amount": Money(p.amount, p.currency).text(),
                        "currency": p.currency,
                    }
                    for p in entry.postings.all()
                ],
            },
            ("ledger.journalentry", entry.pk),
        )
        for entry in entries.order_by("id")
    ]


def _chain_step_items(escrow: Escrow) -> list[TimelineItem]:
    return [
        TimelineItem(
            step.created_at,
            "chain_step",
            step.key,
            {
                "status": step.status,
                "tx_hash": step.tx_hash,
                "attempts": step.attempts,
                "last_error": step.last_error,
                "reference": step.payload.get("reference", ""),
            },
            ("escrow.chainstep", step.pk),
        )
        for step in ChainStep.objects.filter(escrow=escrow).order_by("id")
    ]


def _provider_call_items(references: list[str]) -> list[TimelineItem]:
    return [
        TimelineItem(
            call.created_at,
            "provider_call",
            f"{call.provider} {call.operation}",
            {
                "reference": call.reference,
                "request": f"{call.method} {call.path}",
                "status": call.response_status,
                "outcome": call.outcome,
                "duration_ms": call.duration_ms,
                "error": call.error[:300],
            },
            ("providers.providercall", call.pk),
        )
        for call in ProviderCall.objects.filter(reference__in=references).order_by("id")
    ]
