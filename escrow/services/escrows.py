"""Starting an order's escrow: deploy the contract, then fund it (a two-step saga).

`escrow_deploy` (FUNDS_RESERVED -> ESCROW_CREATING) adds the deploy step; `escrow_fund`
(ESCROW_CREATING -> ESCROW_FUNDING; from FUNDS_RESERVED it deploys first) adds the fund
step. escrow.services.steps runs them and confirms: the escrow is funded by the platform's
treasury account, and the ledger moves the buyer's reservation into `escrow:<order>`
(escrow.services.postings) when the chain shows the funding, exactly once.
"""

from django.db import transaction

from escrow.models import ChainStep, Escrow, Order
from escrow.services.common import locked_order, move, require_state
from escrow.services.steps import roles_for, schedule, step_add
from orchestrator.errors import InvalidStateError

S = Order.Status


def _start_deploy(order: Order) -> Escrow:
    """In the caller's transaction (order locked, FUNDS_RESERVED): the escrow and its deploy."""
    escrow = Escrow.objects.select_for_update().filter(order=order).first()
    roles = roles_for(order)
    kind = Escrow.Kind.MULTI if order.milestones.count() > 1 else Escrow.Kind.SINGLE
    if escrow is None:
        escrow = Escrow.objects.create(
            marketplace_id=order.marketplace_id,
            order=order,
            kind=kind,
            engagement_id=order.public_id,
            amount=order.amount,
            platform_fee_bps=order.platform_fee_bps,
            roles=roles,
        )
    elif escrow.status == Escrow.Status.FAILED:
        escrow.redeploy()
        escrow.roles = roles
        escrow.last_error = ""
        escrow.save()
    else:  # an order back in FUNDS_RESERVED only has a failed escrow
        raise InvalidStateError(
            f"The order's escrow is {escrow.status}.",
            order_id=order.public_id,
            current_state=order.status,
            escrow_state=escrow.status,
        )
    step_add(escrow, ChainStep.Action.DEPLOY)
    move(order, order.create_escrow)
    return escrow


def escrow_deploy(*, order: Order) -> Order:
    """Deploy the order's escrow contract: FUNDS_RESERVED -> ESCROW_CREATING (202).

    Raises:
        InvalidStateError: the order is not in FUNDS_RESERVED.
    """
    with transaction.atomic():
        order = locked_order(order.pk)
        require_state(order, S.FUNDS_RESERVED, action="deploy an escrow")
        schedule(_start_deploy(order))
    return order


def escrow_fund(*, order: Order) -> Order:
    """Fund the escrow: ESCROW_CREATING -> ESCROW_FUNDING (202). From FUNDS_RESERVED the
    contract is deployed first, in the same saga.

    Raises:
        InvalidStateError: the order is past funding, or before reserving.
    """
    with transaction.atomic():
        order = locked_order(order.pk)
        require_state(order, S.FUNDS_RESERVED, S.ESCROW_CREATING, action="fund its escrow")
        if order.status == S.FUNDS_RESERVED:
            escrow = _start_deploy(order)
        else:
            escrow = Escrow.objects.select_for_update().get(order=order)
        step_add(escrow, ChainStep.Action.FUND)
        move(order, order.fund_escrow)
        schedule(escrow)
    return order
