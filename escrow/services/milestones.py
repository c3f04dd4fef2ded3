"""Milestones: the seller marks one completed, the buyer approves it (each on chain).

Both are chain steps (escrow.services.steps): `complete` is signed by the seller's wallet
(the escrow's service provider), `approve` by the buyer's (the approver). An approval may
be asked for while the completion is still on its way: steps of an escrow run in order.
"""

from django.db import transaction

from escrow.models import ChainStep, Escrow, Milestone, Order
from escrow.selectors import milestone_get
from escrow.services.common import locked_order, require_state
from escrow.services.steps import has_pending, schedule, step_add
from orchestrator.errors import InvalidStateError

A = ChainStep.Action


def _locked(order: Order, ref: str) -> tuple[Order, Escrow, Milestone]:
    order = locked_order(order.pk)
    require_state(order, Order.Status.IN_PROGRESS, action="change its milestones")
    milestone = milestone_get(order=order, ref=ref)
    milestone = Milestone.objects.select_for_update().get(pk=milestone.pk)
    escrow = Escrow.objects.select_for_update().get(order=order)
    return order, escrow, milestone


def _wrong_state(milestone: Milestone, action: str, allowed: list[str]) -> InvalidStateError:
    return InvalidStateError(
        f"A milestone in {milestone.status} cannot be {action}.",
        milestone_ref=milestone.ref,
        current_state=milestone.status,
        allowed_states=allowed,
    )


def milestone_complete(*, order: Order, ref: str, evidence: str = "") -> Milestone:
    """The seller says the milestone is done (PENDING -> COMPLETED once on chain).

    Raises:
        MilestoneNotFoundError, InvalidStateError (the order or the milestone).
    """
    with transaction.atomic():
        order, escrow, milestone = _locked(order, ref)
        if milestone.status != Milestone.Status.PENDING:
            raise _wrong_state(milestone, "completed", [Milestone.Status.PENDING])
        if not has_pending(escrow, A.COMPLETE, milestone=milestone):
            step_add(escrow, A.COMPLETE, milestone=milestone, payload={"evidence": evidence})
            schedule(escrow)
    return milestone


def milestone_approve(*, order: Order, ref: str) -> Milestone:
    """The buyer approves a completed milestone (COMPLETED -> APPROVED once on chain).

    Raises:
        MilestoneNotFoundError, InvalidStateError (the order or the milestone).
    """
    with transaction.atomic():
        order, escrow, milestone = _locked(order, ref)
        completing = milestone.status == Milestone.Status.PENDING and has_pending(
            escrow, A.COMPLETE, milestone=milestone
        )
        if milestone.status != Milestone.Status.COMPLETED and not completing:
            raise _wrong_state(milestone, "approved", [Milestone.Status.COMPLETED])
        if not has_pending(escrow, A.APPROVE, milestone=milestone):
            step_add(escrow, A.APPROVE, milestone=milestone)
            schedule(escrow)
    return milestone
