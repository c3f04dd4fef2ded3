"""How a funded order ends: release to the seller, refund to the buyer, or a dispute.

Release and refund are mutually exclusive once started (the order's state machine): a
release moves IN_PROGRESS -> RELEASE_REQUESTED, a refund IN_PROGRESS -> REFUND_REQUESTED,
and each only from IN_PROGRESS.

- Release: single-release escrows need every milestone approved and pay once
  (`release_funds`); multi-release escrows pay each approved milestone on its own
  (`release_milestone_funds`), and the order is RELEASED when the last one is paid.
- Refund: the buyer's wallet disputes the escrow (or each unpaid milestone) and the
  dispute resolver resolves it with everything to the buyer; Trustless Work has no other
  way to send funds back. Its fees are borne as ESCROW_REFUND_FEES says (escrow.fees).
- Dispute: the opener's wallet disputes on chain, freezing the escrow until support
  decides (escrow.services.disputes). A second request returns the open dispute.
"""

from decimal import Decimal
from typing import Any

from django.db import transaction

from escrow.events import DisputeOpened
from escrow.fees import to_stroops
from escrow.models import ChainStep, Dispute, Escrow, Milestone, Order
from escrow.selectors import milestone_get, open_dispute
from escrow.services.common import locked_order, move, require_state
from escrow.services.disputes import publish_dispute
from escrow.services.steps import has_pending, schedule, step_add
from orchestrator.audit import audit_record
from orchestrator.errors import InvalidStateError

A = ChainStep.Action
S = Order.Status
M = Milestone.Status


def _locked(order: Order) -> tuple[Order, Escrow, list[Milestone]]:
    order = locked_order(order.pk)
    escrow = Escrow.objects.select_for_update().filter(order=order).first()
    milestones = list(Milestone.objects.select_for_update().filter(order=order).order_by("index"))
    return order, escrow or Escrow(), milestones


def _approved_or_approving(escrow: Escrow, milestone: Milestone) -> bool:
    return milestone.status == M.APPROVED or (
        milestone.status in (M.PENDING, M.COMPLETED)
        and has_pending(escrow, A.APPROVE, milestone=milestone)
    )


def order_release(*, order: Order, milestone_ref: str = "", reason: str = "") -> Order:
    """Release the escrow to the seller (202; the chain confirms).

    Multi-release orders pay `milestone_ref`, or every approved milestone not paid yet.

    Raises:
        InvalidStateError: the order is not IN_PROGRESS (a multi-release order may also be
            RELEASE_REQUESTED while another milestone is paid), or milestones are not
            approved.
        MilestoneNotFoundError: unknown `milestone_ref`.
    """
    with transaction.atomic():
        order, escrow, milestones = _locked(order)
        multi = escrow.kind == Escrow.Kind.MULTI
        allowed = (S.IN_PROGRESS, S.RELEASE_REQUESTED) if multi else (S.IN_PROGRESS,)
        require_state(order, *allowed, action="be released")
        if multi:
            targets = _release_targets(order, escrow, milestones, milestone_ref)
            for milestone in targets:
                step_add(escrow, A.RELEASE, milestone=milestone)
        else:
            waiting = [m.ref for m in milestones if not _approved_or_approving(escrow, m)]
            if waiting:
                raise InvalidStateError(
                    "Every milestone must be approved before the release.",
                    current_state=order.status,
                    milestones_not_approved=waiting,
                )
            step_add(escrow, A.RELEASE)
        if order.status == S.IN_PROGRESS:
            move(order, order.request_release, reason=reason)
        schedule(escrow)
    return order


def _release_targets(
    order: Order, escrow: Escrow, milestones: list[Milestone], ref: str
) -> list[Milestone]:
    if ref:
        milestone = milestone_get(order=order, ref=ref)
        chosen = [m for m in milestones if m.pk == milestone.pk]
        if not _approved_or_approving(escrow, chosen[0]):
            raise InvalidStateError(
                f"A milestone in {chosen[0].status} cannot be released.",
                milestone_ref=ref,
                current_state=chosen[0].status,
                allowed_states=[M.APPROVED],
            )
        if has_pending(escrow, A.RELEASE, milestone=chosen[0]):
            return []
        return chosen
    targets = [
        m
        for m in milestones
        if _approved_or_approving(escrow, m) and not has_pending(escrow, A.RELEASE, milestone=m)
    ]
    if not targets:
        raise InvalidStateError(
            "No approved milestone is waiting to be paid.",
            current_state=order.status,
            milestones={m.ref: m.status for m in milestones},
        )
    return targets


def _unpaid(milestones: list[Milestone]) -> list[Milestone]:
    return [m for m in milestones if m.status != M.RELEASED]


def order_refund(*, order: Order, reason: str = "") -> Order:
    """Refund what is in escrow to the buyer (202; the chain confirms).

    Raises:
        InvalidStateError: the order is not IN_PROGRESS.
    """
    with transaction.atomic():
        order, escrow, milestones = _locked(order)
        require_state(order, S.IN_PROGRESS, action="be refunded")
        if escrow.kind == Escrow.Kind.MULTI:
            for milestone in _unpaid(milestones):
                step_add(
                    escrow,
                    A.DISPUTE,
                    milestone=milestone,
                    payload={"by": "buyer", "purpose": "refund"},
                )
                step_add(
                    escrow,
                    A.RESOLVE,
                    milestone=milestone,
                    payload=_refund_payload(order, milestone.amount, f":{milestone.ref}"),
                )
        else:
            step_add(escrow, A.DISPUTE, payload={"by": "buyer", "purpose": "refund"})
            step_add(escrow, A.RESOLVE, payload=_refund_payload(order, order.amount, ""))
        move(order, order.request_refund, reason=reason)
        schedule(escrow)
    return order


def _refund_payload(order: Order, amount: Decimal, suffix: str) -> dict[str, Any]:
    return {
        "purpose": "refund",
        "shares": [["buyer", to_stroops(Decimal(amount))]],
        "reference": f"order:{order.public_id}:refund{suffix}",
    }


def order_dispute(
    *,
    order: Order,
    opened_by: str,
    reason: str,
    description: str = "",
    evidence: list[str] | None = None,
) -> tuple[Dispute, bool]:
    """Open a dispute (IN_PROGRESS -> DISPUTED); returns (dispute, created).

    A second request while one is open returns the open one (created False).

    Raises:
        InvalidStateError: no dispute is open and the order is not IN_PROGRESS.
    """
    with transaction.atomic():
        order, escrow, milestones = _locked(order)
        existing = open_dispute(order)
        if existing is not None:
            return existing, False
        require_state(order, S.IN_PROGRESS, action="be disputed")
        dispute = Dispute.objects.create(
            marketplace_id=order.marketplace_id,
            order=order,
            opened_by=opened_by,
            reason=reason,
            description=description,
            evidence=evidence or [],
        )
        payload = {"by": opened_by.lower(), "purpose": "dispute"}
        if escrow.kind == Escrow.Kind.MULTI:
            for milestone in _unpaid(milestones):
                step_add(escrow, A.DISPUTE, milestone=milestone, payload=payload)
        else:
            step_add(escrow, A.DISPUTE, payload=payload)
        move(order, order.dispute, reason=f"dispute {dispute.public_id}: {reason}")
        audit_record(
            action="dispute.opened",
            object_type="dispute",
            object_id=dispute.public_id,
            marketplace_id=order.marketplace_id,
            after={"status": dispute.status, "order_id": order.public_id, "reason": reason},
        )
        publish_dispute(dispute, order, DisputeOpened)
        schedule(escrow)
    return dispute, True
