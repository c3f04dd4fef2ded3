"""Orders before the chain: create, reserve the buyer's funds, cancel.

Ledger effects: reserve holds the amount (buyer.available -> buyer.reserved); cancel
returns it. Both are exactly-once by their references (escrow.services.postings).
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from escrow.errors import ClientOrderRefExistsError, InvalidAmountError
from escrow.events import BalanceReleased, BalanceReserved, OrderCanceled
from escrow.fees import MAX_PLATFORM_FEE_BPS
from escrow.models import ChainStep, Escrow, Milestone, Order, order_snapshot
from escrow.services import postings
from escrow.services.common import (
    locked_order,
    locked_order_by_id,
    move,
    publish_order,
    require_state,
)
from ledger.errors import InvalidCurrencyError
from ledger.money import Money
from orchestrator.audit import audit_record
from orchestrator.errors import ValidationFailedError
from orchestrator.events import publish
from orchestrator.models import Marketplace, MarketplaceUser

ORDER_CURRENCY = "USD"  # users' balances are dollars (Airtm); the chain holds USDC 1:1
MAX_MILESTONES = 10  # what the single-release contract accepts
DEFAULT_MILESTONE_REF = "default"


@dataclass(frozen=True)
class MilestoneInput:
    ref: str
    title: str
    amount: Money


def order_create(
    *,
    marketplace: Marketplace,
    buyer: MarketplaceUser,
    seller: MarketplaceUser,
    amount: Money,
    title: str,
    description: str = "",
    client_order_ref: str | None = None,
    milestones: list[MilestoneInput] | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Order, list[Milestone]]:
    """Create an order in ORDER_CREATED; returns it and its milestones.

    Without milestones the order gets one, `default`, for the whole amount (an escrow
    contract needs at least one). Two or more milestones make a multi-release escrow
    that pays each milestone on its own.

    Raises:
        ValidationFailedError: buyer and seller are the same user; duplicate milestone refs.
        InvalidCurrencyError: not USD.
        InvalidAmountError: milestone amounts do not add up to the order amount.
        ClientOrderRefExistsError: the marketplace already has an order with this ref.
    """
    if buyer.pk == seller.pk:
        raise ValidationFailedError(
            "The buyer and the seller must be different users.",
            fields={"seller_id": ["The seller cannot be the buyer."]},
        )
    if amount.currency != ORDER_CURRENCY:
        raise InvalidCurrencyError("Orders are in USD.", currency=amount.currency)
    if marketplace.platform_fee_bps > MAX_PLATFORM_FEE_BPS:
        raise ValidationFailedError("The marketplace's platform fee is above 99 %.")
    parts = milestones or [MilestoneInput(DEFAULT_MILESTONE_REF, title, amount)]
    _check_milestones(parts, amount)
    try:
        with transaction.atomic():
            order = Order.objects.create(
                marketplace=marketplace,
                buyer=buyer,
                seller=seller,
                amount=amount.amount,
                currency=amount.currency,
                title=title,
                description=description,
                client_order_ref=client_order_ref or None,
                metadata=metadata or {},
                platform_fee_bps=marketplace.platform_fee_bps,
            )
            created = Milestone.objects.bulk_create(
                Milestone(order=order, ref=m.ref, index=i, title=m.title, amount=m.amount.amount)
                for i, m in enumerate(parts)
            )
            audit_record(
                action="order.created",
                object_type="order",
                object_id=order.public_id,
                marketplace_id=marketplace.pk,
                after=order_snapshot(order),
            )
            publish_order(order, previous="", escrow_id="")
    except IntegrityError:
        existing = Order.objects.filter(
            marketplace=marketplace, client_order_ref=client_order_ref
        ).first()
        if client_order_ref and existing is not None:
            raise ClientOrderRefExistsError(
                "An order with this client_order_ref exists.",
                client_order_ref=client_order_ref,
                order_id=existing.public_id,
            ) from None
        raise
    return order, created


def _check_milestones(parts: list[MilestoneInput], amount: Money) -> None:
    if len(parts) > MAX_MILESTONES:
        raise ValidationFailedError(
            f"At most {MAX_MILESTONES} milestones.",
            fields={"milestones": [f"At most {MAX_MILESTONES} milestones."]},
        )
    refs = [m.ref for m in parts]
    if len(set(refs)) != len(refs):
        raise ValidationFailedError(
            "Milestone refs must be unique.",
            fields={"milestones": ["Each milestone_ref must be unique."]},
        )
    total = sum((m.amount.amount for m in parts), Decimal(0))
    if any(m.amount.currency != amount.currency for m in parts) or total != amount.amount:
        raise InvalidAmountError(
            f"Milestone amounts add up to {Money(total, amount.currency).text()}, "
            f"not the order amount {amount.text()}.",
            amount=amount.text(),
            milestones_total=Money(total, amount.currency).text(),
        )


def order_reserve(*, marketplace: Marketplace, order_id: str) -> Order:
    """Reserve the order's amount in the buyer's balance: ORDER_CREATED -> FUNDS_RESERVED.

    Raises:
        OrderNotFoundError: no such order in the marketplace.
        InvalidStateError: not in ORDER_CREATED (409, naming the current state).
        InsufficientFundsError: the buyer's available balance is short (422); nothing changed.
    """
    with transaction.atomic():
        # Found and locked in one statement: this is the hot path of order taking.
        order = locked_order_by_id(marketplace, order_id)
        require_state(order, Order.Status.CREATED, action="reserve funds")
        order.hold = postings.reserve(order)
        move(order, order.reserve, escrow_id="")  # no escrow before funds are reserved
        publish(
            BalanceReserved(
                marketplace_id=order.marketplace_id,
                aggregate_id=order.buyer.public_id,
                user_ids=(order.buyer.public_id,),
                user_id=order.buyer.public_id,
                order_id=order.public_id,
                amount=order.money,
            )
        )
    return order


def order_cancel(*, order: Order, reason: str = "") -> Order:
    """Cancel an order before its escrow is funded; a reservation goes back to available.

    Raises:
        InvalidStateError: funding started already (or the order is past it).
    """
    with transaction.atomic():
        order = locked_order(order.pk)
        require_state(order, *Order.CANCELABLE, action="be canceled")
        reserved = order.hold is not None
        postings.release_reservation(order)
        escrow = Escrow.objects.select_for_update().filter(order=order).first()
        if escrow is not None:
            # Nothing was funded (funding moves the order out of the cancelable states). A
            # deploy still in flight may land: its contract stays empty and unused.
            escrow.abandon()
            escrow.save()
            ChainStep.objects.filter(escrow=escrow, status=ChainStep.Status.PENDING).update(
                status=ChainStep.Status.CANCELED
            )
        move(
            order,
            order.cancel,
            reason,
            reason=reason or "canceled",
            event=OrderCanceled,
            escrow_id=escrow.public_id if escrow else "",
        )
        if reserved:
            publish(
                BalanceReleased(
                    marketplace_id=order.marketplace_id,
                    aggregate_id=order.buyer.public_id,
                    user_ids=(order.buyer.public_id,),
                    user_id=order.buyer.public_id,
                    order_id=order.public_id,
                    amount=order.money,
                    reason="order_canceled",
                )
            )
    return order
