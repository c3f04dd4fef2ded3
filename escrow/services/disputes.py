"""Disputes: support assigns them (OPEN -> UNDER_REVIEW) and decides (-> RESOLVED).

A decision pays out what the escrow still holds (the order's amount, less milestones
already paid): FULL_RELEASE to the seller, FULL_REFUND to the buyer, or a SPLIT whose
release and refund amounts must add up to exactly that. The dispute resolver's key
resolves on chain (per unpaid milestone for multi-release escrows, each split pro rata
in whole cents); the dispute is RESOLVED, and the order closed, once the chain confirms.
"""

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from escrow.errors import InvalidAmountError
from escrow.events import DisputeDecided, DisputeEvent, DisputeResolved, DisputeUnderReview
from escrow.fees import NotSettleableError, resolution_payout, to_stroops
from escrow.models import ChainStep, Dispute, Escrow, Milestone, Order
from escrow.services.common import locked_order
from escrow.services.steps import schedule, step_add
from ledger.money import Money
from orchestrator.audit import audit_record
from orchestrator.context import current_actor
from orchestrator.errors import InvalidStateError, ValidationFailedError
from orchestrator.events import publish

D = Dispute.Decision


def publish_dispute(dispute: Dispute, order: Order, cls: type[DisputeEvent]) -> None:
    def usd(value: Decimal | None) -> Money | None:
        return None if value is None else Money(Decimal(value).quantize(Decimal("0.01")), "USD")

    publish(
        cls(
            marketplace_id=dispute.marketplace_id,
            aggregate_id=dispute.public_id,
            user_ids=(order.buyer.public_id, order.seller.public_id),
            order_id=order.public_id,
            status=dispute.status,
            opened_by=dispute.opened_by,
            reason=dispute.reason,
            assigned_to=dispute.assigned_to,
            decision=dispute.decision,
            release_amount=usd(dispute.release_amount),
            refund_amount=usd(dispute.refund_amount),
        )
    )


def _locked(dispute: Dispute) -> tuple[Order, Dispute]:
    order = locked_order(dispute.order_id)
    return order, Dispute.objects.select_for_update().get(pk=dispute.pk)


def _audit(dispute: Dispute, before: str, **after: Any) -> None:
    audit_record(
        action="dispute.status_changed",
        object_type="dispute",
        object_id=dispute.public_id,
        marketplace_id=dispute.marketplace_id,
        before={"status": before},
        after={"status": dispute.status, **after},
    )


def dispute_assign(*, dispute: Dispute, assigned_to: str) -> Dispute:
    """Put an open dispute under review by `assigned_to`.

    Raises:
        InvalidStateError: the dispute is not OPEN.
    """
    with transaction.atomic():
        order, dispute = _locked(dispute)
        if dispute.status != Dispute.Status.OPEN:
            raise InvalidStateError(
                f"A dispute in {dispute.status} cannot be assigned.",
                current_state=dispute.status,
                allowed_states=[Dispute.Status.OPEN],
            )
        before = dispute.status
        dispute.assign(assigned_to)
        dispute.save()
        _audit(dispute, before, assigned_to=assigned_to)
        publish_dispute(dispute, order, DisputeUnderReview)
    return dispute


def dispute_resolve(
    *,
    dispute: Dispute,
    decision: str,
    release_amount: Money | None = None,
    refund_amount: Money | None = None,
    note: str = "",
) -> Dispute:
    """Decide a dispute under review; the payout follows on chain (202).

    Raises:
        InvalidStateError: not UNDER_REVIEW, or decided already.
        ValidationFailedError: amounts given with a FULL_* decision, or missing for SPLIT.
        InvalidAmountError: a split that does not add up to what is in escrow.
    """
    with transaction.atomic():
        order, dispute = _locked(dispute)
        if dispute.status != Dispute.Status.UNDER_REVIEW or dispute.decision:
            raise InvalidStateError(
                "This dispute was decided already; the payout is on its way."
                if dispute.decision
                else f"A dispute in {dispute.status} cannot be resolved.",
                current_state=dispute.status,
                allowed_states=[Dispute.Status.UNDER_REVIEW],
                decision=dispute.decision or None,
            )
        escrow = Escrow.objects.select_for_update().get(order=order)
        unpaid = list(
            Milestone.objects.select_for_update()
            .filter(order=order)
            .exclude(status=Milestone.Status.RELEASED)
            .order_by("index")
        )
        held = Money(sum((Decimal(m.amount) for m in unpaid), Decimal(0)), "USD")
        release, refund = _amounts(decision, held, release_amount, refund_amount)
        dispute.decision = decision
        dispute.release_amount = release.amount
        dispute.refund_amount = refund.amount
        dispute.decision_note = note
        dispute.decided_by = f"{current_actor().kind}:{current_actor().id}"[:150]
        dispute.decided_at = timezone.now()
        dispute.save()
        for milestone, shares in _per_milestone(escrow, unpaid, release, refund):
            _check_settleable(shares, escrow.platform_fee_bps)
            suffix = f":{milestone.ref}" if milestone is not None else ""
            step_add(
                escrow,
                ChainStep.Action.RESOLVE,
                milestone=milestone,
                payload={
                    "purpose": "decision",
                    "dispute_id": dispute.public_id,
                    "shares": shares,
                    "reference": f"order:{order.public_id}:resolution{suffix}",
                },
            )
        audit_record(
            action="dispute.decided",
            object_type="dispute",
            object_id=dispute.public_id,
            marketplace_id=dispute.marketplace_id,
            after={
                "decision": decision,
                "release_amount": release.text(),
                "refund_amount": refund.text(),
                "held": held.text(),
            },
            reason=note,
        )
        publish_dispute(dispute, order, DisputeDecided)
        schedule(escrow)
    return dispute


def _amounts(
    decision: str, held: Money, release: Money | None, refund: Money | None
) -> tuple[Money, Money]:
    zero = Money.zero("USD")
    if decision in (D.FULL_RELEASE, D.FULL_REFUND):
        if release is not None or refund is not None:
            raise ValidationFailedError(
                f"{decision} takes no amounts: it pays out everything in escrow.",
                fields={
                    "release_amount": ["Only for SPLIT."],
                    "refund_amount": ["Only for SPLIT."],
                },
            )
        return (held, zero) if decision == D.FULL_RELEASE else (zero, held)
    if release is None or refund is None:
        raise ValidationFailedError(
            "A SPLIT needs release_amount and refund_amount.",
            fields={
                name: ["Required for SPLIT."]
                for name, value in (("release_amount", release), ("refund_amount", refund))
                if value is None
            },
        )
    if release.currency != "USD" or refund.currency != "USD" or release + refund != held:
        raise InvalidAmountError(
            f"release_amount and refund_amount must add up to {held.text()} USD, what is in "
            "escrow.",
            in_escrow=held.text(),
            release_amount=release.text(),
            refund_amount=refund.text(),
        )
    return release, refund


def _per_milestone(
    escrow: Escrow, unpaid: list[Milestone], release: Money, refund: Money
) -> list[tuple[Milestone | None, list[list[Any]]]]:
    """The resolution's distributions: one for a single-release escrow; for multi-release,
    one per unpaid milestone, the seller's part spread pro rata in whole cents."""

    def shares(to_seller: Money, to_buyer: Money) -> list[list[Any]]:
        found: list[list[Any]] = []
        if to_seller.amount:
            found.append(["seller", to_stroops(to_seller.amount)])
        if to_buyer.amount:
            found.append(["buyer", to_stroops(to_buyer.amount)])
        return found

    if escrow.kind != Escrow.Kind.MULTI:
        return [(None, shares(release, refund))]
    cents = [int(Decimal(m.amount) * 100) for m in unpaid]
    parts = release.allocate(cents)
    return [
        (milestone, shares(part, Money(Decimal(milestone.amount), "USD") - part))
        for milestone, part in zip(unpaid, parts, strict=True)
    ]


def _check_settleable(shares: list[list[Any]], platform_fee_bps: int) -> None:
    try:
        resolution_payout([(str(p), int(s)) for p, s in shares], platform_fee_bps)
    except NotSettleableError as exc:
        raise InvalidAmountError(
            "The contract cannot pay this split exactly; adjust it by a cent.", problem=str(exc)
        ) from None


def dispute_resolved(dispute: Dispute, order: Order) -> None:
    """The chain paid the decision out (escrow.services.steps, in its transaction)."""
    if dispute.status == Dispute.Status.RESOLVED:
        return
    before = dispute.status
    dispute.resolve()
    dispute.save()
    _audit(dispute, before, decision=dispute.decision)
    publish_dispute(dispute, order, DisputeResolved)
