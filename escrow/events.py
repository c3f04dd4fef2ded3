"""Domain events of orders, escrows, disputes and the balances they move (outbox, via publish).

Types: `order.*` (one per order status reached, plus `order.canceled`), `escrow.*` (what
the chain confirmed), `dispute.*`, and `balance.reserved` / `balance.released` /
`balance.credited` for the users' balances an order moves (the ledger also publishes its
generic `balance.updated` for every entry).
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ledger.money import Money
from orchestrator.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class OrderEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "order"

    buyer_id: str
    seller_id: str
    amount: Money
    status: str
    previous_status: str = ""
    escrow_id: str = ""
    reason: str = ""


def _order_event(name: str) -> type[OrderEvent]:
    """The event class of type `order.<name>` (one per order status, and a few more)."""
    cls: type[OrderEvent] = dataclass(frozen=True, kw_only=True)(
        type(f"Order{name.title().replace('_', '')}", (OrderEvent,), {"type": f"order.{name}"})
    )
    return cls


OrderCreated = _order_event("created")
OrderFundsReserved = _order_event("funds_reserved")
OrderCanceled = _order_event("canceled")
OrderEscrowCreating = _order_event("escrow_creating")
OrderEscrowFunding = _order_event("escrow_funding")
OrderEscrowFunded = _order_event("escrow_funded")
OrderInProgress = _order_event("in_progress")
OrderReleaseRequested = _order_event("release_requested")
OrderReleased = _order_event("released")
OrderRefundRequested = _order_event("refund_requested")
OrderRefunded = _order_event("refunded")
OrderDisputed = _order_event("disputed")
OrderClosed = _order_event("closed")
# Back to FUNDS_RESERVED / ESCROW_CREATING / IN_PROGRESS after a failed chain step.
OrderEscrowFailed = _order_event("escrow_failed")
OrderFundingFailed = _order_event("escrow_funding_failed")
OrderReleaseFailed = _order_event("release_failed")

ORDER_EVENTS: dict[str, type[OrderEvent]] = {
    "ORDER_CREATED": OrderCreated,
    "FUNDS_RESERVED": OrderFundsReserved,
    "ESCROW_CREATING": OrderEscrowCreating,
    "ESCROW_FUNDING": OrderEscrowFunding,
    "ESCROW_FUNDED": OrderEscrowFunded,
    "IN_PROGRESS": OrderInProgress,
    "RELEASE_REQUESTED": OrderReleaseRequested,
    "RELEASED": OrderReleased,
    "REFUND_REQUESTED": OrderRefundRequested,
    "REFUNDED": OrderRefunded,
    "DISPUTED": OrderDisputed,
    "CLOSED": OrderClosed,
}


@dataclass(frozen=True, kw_only=True)
class EscrowEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "escrow"

    order_id: str
    status: str
    contract_id: str = ""
    tx_hash: str = ""
    milestone_ref: str = ""
    amount: Money | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _escrow_event(name: str) -> type[EscrowEvent]:
    cls: type[EscrowEvent] = dataclass(frozen=True, kw_only=True)(
        type(f"Escrow{name.title().replace('_', '')}", (EscrowEvent,), {"type": f"escrow.{name}"})
    )
    return cls


EscrowCreated = _escrow_event("created")
EscrowFunded = _escrow_event("funded")
EscrowMilestoneCompleted = _escrow_event("milestone_completed")
EscrowMilestoneApproved = _escrow_event("milestone_approved")
EscrowMilestoneReleased = _escrow_event("milestone_released")
EscrowReleased = _escrow_event("released")
EscrowDisputed = _escrow_event("disputed")
EscrowRefunded = _escrow_event("refunded")
EscrowResolved = _escrow_event("resolved")
EscrowStepFailed = _escrow_event("step_failed")


@dataclass(frozen=True, kw_only=True)
class DisputeEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "dispute"

    order_id: str
    status: str
    opened_by: str
    reason: str
    assigned_to: str = ""
    decision: str = ""
    release_amount: Money | None = None
    refund_amount: Money | None = None


@dataclass(frozen=True, kw_only=True)
class DisputeOpened(DisputeEvent):
    type = "dispute.opened"


@dataclass(frozen=True, kw_only=True)
class DisputeUnderReview(DisputeEvent):
    type = "dispute.under_review"


@dataclass(frozen=True, kw_only=True)
class DisputeDecided(DisputeEvent):
    """Support decided; the money moves when the chain confirms (dispute.resolved)."""

    type = "dispute.decided"


@dataclass(frozen=True, kw_only=True)
class DisputeResolved(DisputeEvent):
    type = "dispute.resolved"


@dataclass(frozen=True, kw_only=True)
class BalanceEvent(DomainEvent):
    aggregate_type: ClassVar[str] = "user"

    user_id: str
    order_id: str
    amount: Money


@dataclass(frozen=True, kw_only=True)
class BalanceReserved(BalanceEvent):
    type = "balance.reserved"


@dataclass(frozen=True, kw_only=True)
class BalanceReleased(BalanceEvent):
    """A reservation ended: returned to available (cancel) or moved into escrow (funded)."""

    type = "balance.released"

    reason: str


@dataclass(frozen=True, kw_only=True)
class BalanceCredited(BalanceEvent):
    """Money out of an escrow reached the user's available balance."""

    type = "balance.credited"

    source: str  # release, refund, split
