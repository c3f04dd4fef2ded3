"""Chain steps: the calls to Trustless Work behind every escrow action, run in order.

A request (deploy, fund, complete, approve, release, refund, dispute, resolve) adds its
ChainStep rows in the transaction that moves the order, and queues `escrow_advance` after
commit. `escrow_advance` takes the escrow's lease and runs its pending steps one by one,
oldest first. Each step is

1. prepared (a short transaction: e.g. the escrow goes FUNDED -> RELEASING),
2. called (the client, outside any transaction; its signed envelope is stored on the step
   before it is first submitted, see providers.clients.trustless_work.TxJournal), then
3. confirmed (a transaction: the step is DONE, state machines move, ledger entries post,
   audit rows and events are written) or failed.

A retried task, a restarted worker and the janitor all enter through `escrow_advance`; a
DONE step is never called again and a pending step resumes with its stored envelope, so
nothing lands twice. Confirmations come from the chain (the submission's answer or an
on-chain read), never from Trustless Work's lagging read model.

Failures: a definitive refusal of a deploy, fund, complete, approve or release undoes
the request (the order goes back to where it was, with `escrow.step_failed`). Disputes and
resolutions are not undone (the money is frozen on chain until a resolution lands): they
are retried, and flagged `needs_attention` after ESCROW_STEP_ATTENTION_ATTEMPTS tries.
Uncertain outcomes (timeouts, 5xx, rate limits, indexer lag) are retried with back-off by
a task and, in any case, by the janitor.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from escrow.events import (
    BalanceCredited,
    BalanceReleased,
    EscrowCreated,
    EscrowDisputed,
    EscrowEvent,
    EscrowFunded,
    EscrowMilestoneApproved,
    EscrowMilestoneCompleted,
    EscrowMilestoneReleased,
    EscrowRefunded,
    EscrowReleased,
    EscrowResolved,
    EscrowStepFailed,
    OrderEscrowFailed,
    OrderFundingFailed,
    OrderReleaseFailed,
)
from escrow.fees import (
    Payout,
    platform_fee_percent,
    release_payout,
    resolution_payout,
    to_stroops,
)
from escrow.models import ChainStep, Dispute, Escrow, Milestone, Order
from escrow.services import postings, sandbox
from escrow.services.common import lease, locked_order, move, tw_client
from ledger.money import Money
from orchestrator.audit import audit_record
from orchestrator.events import publish
from providers.clients.errors import ProviderError, ProviderRejectedError
from providers.clients.trustless_work import TxJournal
from providers.clients.trustless_work_types import (
    DeployRequest,
    Distribution,
    MilestoneSpec,
    Roles,
    TxResult,
)
from providers.models import StellarKey
from providers.stellar.keys import StellarKeyError, stellar_key_for, stellar_key_for_user

logger = logging.getLogger(__name__)

A = ChainStep.Action
MULTI = Escrow.Kind.MULTI


# --- Adding steps (inside the request's transaction) ------------------------------------------


def step_add(
    escrow: Escrow,
    action: str,
    *,
    milestone: Milestone | None = None,
    payload: dict[str, Any] | None = None,
) -> ChainStep:
    """Add a pending step (a failed or canceled one with the same key is re-armed).

    `milestone` names the milestone a step is about: always for complete and approve, and
    for release, dispute and resolve of multi-release escrows (per-milestone calls).
    """
    key = action if milestone is None else f"{action}:{milestone.index}"
    step, created = ChainStep.objects.get_or_create(
        escrow=escrow,
        key=key,
        defaults={
            "action": action,
            "milestone_index": None if milestone is None else milestone.index,
            "payload": payload or {},
        },
    )
    if not created and step.status in (ChainStep.Status.FAILED, ChainStep.Status.CANCELED):
        step.status = ChainStep.Status.PENDING
        step.payload = payload or {}
        step.signed_xdr = step.tx_hash = step.last_error = ""
        step.attempts = 0
        step.result = {}
        step.save()
    return step


def has_pending(escrow: Escrow, *actions: str, milestone: Milestone | None = None) -> bool:
    steps = ChainStep.objects.filter(escrow=escrow, status=ChainStep.Status.PENDING)
    if actions:
        steps = steps.filter(action__in=actions)
    if milestone is not None:
        steps = steps.filter(milestone_index=milestone.index)
    return steps.exists()


def schedule(escrow: Escrow) -> None:
    """Run the escrow's steps once the caller's transaction commits."""
    from escrow.tasks import escrow_advance_task

    escrow_id = escrow.pk
    transaction.on_commit(lambda: escrow_advance_task.delay(escrow_id=escrow_id))


def retry_later(escrow_id: int, attempts: int) -> None:
    """Queue another run with back-off. In-process (eager) mode the janitor is the retry.

    The run carries the waiting step's attempt count (`retry_of`): if anything else tries
    the step before it is due (the janitor, a request's task, another retry), that run
    queued its own retry and this one is dropped, so a stuck step has one retry chain
    rather than one more for every janitor pass.
    """
    from orchestrator.celery import app

    if app.conf.task_always_eager:
        return
    countdown = min(600, 5 * 2 ** min(attempts, 7))
    app.send_task(
        "escrow.tasks.escrow_advance_task",
        kwargs={"escrow_id": escrow_id, "retry_of": attempts},
        countdown=countdown,
    )


# --- Running steps -----------------------------------------------------------------------------


def escrow_advance(*, escrow_id: int, retry_of: int | None = None) -> Escrow:
    """Run the escrow's pending steps in order until none is left or one has to wait.

    Safe to call any number of times from anywhere: one process at a time holds the lease,
    the others return at once (the holder runs what they would have run). A delayed retry
    (`retry_of`, see retry_later) does nothing if its step was tried again since.
    """
    if retry_of is not None and _superseded(escrow_id, retry_of):
        return Escrow.objects.get(pk=escrow_id)
    while True:
        with lease(escrow_id) as taken:
            if not taken:
                break
            waiting = _run_pending(escrow_id)
        # A step added while we held the lease may have found it busy: look once more.
        if (
            waiting
            or not ChainStep.objects.filter(
                escrow_id=escrow_id, status=ChainStep.Status.PENDING
            ).exists()
        ):
            break
    return Escrow.objects.get(pk=escrow_id)


def _superseded(escrow_id: int, attempts: int) -> bool:
    """Whether the step a retry was queued for has been tried since (or is done)."""
    step = (
        ChainStep.objects.filter(escrow_id=escrow_id, status=ChainStep.Status.PENDING)
        .order_by("id")
        .first()
    )
    return step is None or step.attempts != attempts


def _run_pending(escrow_id: int) -> bool:
    """Run pending steps; True if one has to wait (retry later)."""
    while True:
        step = (
            ChainStep.objects.filter(escrow_id=escrow_id, status=ChainStep.Status.PENDING)
            .order_by("id")
            .first()
        )
        if step is None:
            return False
        if not _run(step):
            return True


def _run(step: ChainStep) -> bool:
    """Prepare, call and confirm one step; False if it has to wait for a retry."""
    handler = HANDLERS[step.action]
    with transaction.atomic():
        order = locked_order(
            Escrow.objects.values_list("order_id", flat=True).get(pk=step.escrow_id)
        )
        step = ChainStep.objects.select_for_update().get(pk=step.pk)
        if step.status != ChainStep.Status.PENDING:
            return True
        escrow = Escrow.objects.select_for_update().get(pk=step.escrow_id)
        if handler.prepare is not None:
            handler.prepare(order, escrow, step)
    journal = TxJournal(pending_xdr=step.signed_xdr, on_signed=_journal_writer(step.pk))
    try:
        result = handler.call(Party(order), escrow, step, journal)
    except ProviderRejectedError as exc:
        if exc.retryable or handler.fail is None:
            return _wait(step, f"{exc.code}: {exc.message}")
        _fail(step, handler.fail, exc.message)
        return True
    except (ProviderError, StellarKeyError) as exc:
        message = exc.message if isinstance(exc, ProviderError) else str(exc)
        return _wait(step, message)
    except Exception as exc:  # a bug or a misconfiguration: keep the step, say so, go on
        logger.exception("Escrow step %s failed unexpectedly", step)
        return _wait(step, f"internal error: {type(exc).__name__}")
    try:
        _confirm(step, handler.confirm, result)
    except Exception as exc:  # the confirmation rolled back; the next run confirms again
        logger.exception("Escrow step %s landed but could not be confirmed", step)
        return _wait(step, f"confirmation failed: {type(exc).__name__}")
    return True


def _journal_writer(step_pk: int) -> Callable[[str, str], None]:
    def record(signed_xdr: str, tx_hash: str) -> None:
        # Autocommit: stored before the envelope is submitted, whatever happens next.
        ChainStep.objects.filter(pk=step_pk).update(
            signed_xdr=signed_xdr, tx_hash=tx_hash, updated_at=timezone.now()
        )

    return record


def _wait(step: ChainStep, message: str) -> bool:
    attempts = step.attempts + 1
    ChainStep.objects.filter(pk=step.pk).update(
        attempts=F("attempts") + 1, last_error=message[:500], updated_at=timezone.now()
    )
    attention = attempts >= settings.ESCROW_STEP_ATTENTION_ATTEMPTS
    changes: dict[str, Any] = {"last_error": f"{step.key}: {message}"[:500]}
    if attention:
        changes["needs_attention"] = True
    Escrow.objects.filter(pk=step.escrow_id).update(**changes, updated_at=timezone.now())
    if attention:
        logger.error("Escrow step %s failed %s times: %s", step, attempts, message)
    else:
        logger.warning("Escrow step %s will be retried: %s", step, message)
    retry_later(step.escrow_id, attempts)
    return False


Confirm = Callable[[Order, Escrow, ChainStep, TxResult], None]
Fail = Callable[[Order, Escrow, ChainStep, str], None]


def _locked_pending(step: ChainStep) -> tuple[Order, ChainStep, Escrow] | None:
    """The step's order, the step and its escrow, locked in that order (inside the caller's
    transaction); None if the step is no longer pending (another run settled it)."""
    order = locked_order(Escrow.objects.values_list("order_id", flat=True).get(pk=step.escrow_id))
    step = ChainStep.objects.select_for_update().get(pk=step.pk)
    if step.status != ChainStep.Status.PENDING:
        return None
    return order, step, Escrow.objects.select_for_update().get(pk=step.escrow_id)


def _confirm(step: ChainStep, confirm: Confirm, result: TxResult) -> None:
    with transaction.atomic():
        locked = _locked_pending(step)
        if locked is None:
            return
        order, step, escrow = locked
        step.status = ChainStep.Status.DONE
        step.tx_hash = result.tx_hash or step.tx_hash
        step.result = {
            "tx_hash": result.tx_hash,
            "already_done": result.already_done,
            "confirmed_by_lookup": result.confirmed_by_lookup,
        }
        step.last_error = ""
        step.done_at = timezone.now()
        step.save()
        escrow.last_error = ""
        escrow.needs_attention = False
        confirm(order, escrow, step, result)
        escrow.save()


def _fail(step: ChainStep, fail: Fail, message: str) -> None:
    with transaction.atomic():
        locked = _locked_pending(step)
        if locked is None:
            return
        order, step, escrow = locked
        step.status = ChainStep.Status.FAILED
        step.last_error = message[:500]
        step.attempts += 1
        step.save()
        escrow.last_error = f"{step.key}: {message}"[:500]
        fail(order, escrow, step, message)
        escrow.save()
        audit_record(
            action="escrow.step_failed",
            object_type="escrow",
            object_id=escrow.public_id,
            marketplace_id=escrow.marketplace_id,
            after={"step": step.key, "error": message[:500]},
        )
        _escrow_event(EscrowStepFailed, escrow, order, details={"step": step.key, "error": message})


# --- Parties: the keys that sign ---------------------------------------------------------------


class Party:
    """The keys of an order's escrow, loaded when a step needs them."""

    def __init__(self, order: Order) -> None:
        self.order = order

    def role(self, role: str) -> StellarKey:
        return stellar_key_for(marketplace=self.order.marketplace, role=role)

    @property
    def buyer(self) -> StellarKey:
        return stellar_key_for_user(user=self.order.buyer)

    @property
    def seller(self) -> StellarKey:
        return stellar_key_for_user(user=self.order.seller)

    def user(self, party: str) -> StellarKey:
        return self.buyer if party == "buyer" else self.seller


def roles_for(order: Order) -> dict[str, str]:
    """The escrow's role addresses (keys are created on first use). See escrow.services."""
    party = Party(order)
    return {
        "approver": party.buyer.public_key,
        "service_provider": party.seller.public_key,
        "receiver": party.seller.public_key,
        "platform_address": party.role(StellarKey.Role.PLATFORM).public_key,
        "release_signer": party.role(StellarKey.Role.RELEASE_SIGNER).public_key,
        "dispute_resolver": party.role(StellarKey.Role.DISPUTE_RESOLVER).public_key,
        "funder": party.role(StellarKey.Role.TREASURY).public_key,
        "buyer": party.buyer.public_key,
    }


# --- The handlers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handler:
    call: Callable[[Party, Escrow, ChainStep, TxJournal], TxResult]
    confirm: Confirm
    prepare: Callable[[Order, Escrow, ChainStep], None] | None = None
    fail: Fail | None = None  # None: refusals are retried (money is frozen on chain)


def _milestones(order: Order) -> list[Milestone]:
    return list(Milestone.objects.select_for_update().filter(order=order).order_by("index"))


def _milestone(order: Order, step: ChainStep) -> Milestone:
    return Milestone.objects.select_for_update().get(order=order, index=step.milestone_index or 0)


def _escrow_event(cls: type[EscrowEvent], escrow: Escrow, order: Order, **fields: Any) -> None:
    publish(
        cls(
            marketplace_id=escrow.marketplace_id,
            aggregate_id=escrow.public_id,
            user_ids=(order.buyer.public_id, order.seller.public_id),
            order_id=order.public_id,
            status=escrow.status,
            contract_id=escrow.contract_id,
            **fields,
        )
    )


def _escrow_move(escrow: Escrow, transition: Callable[..., None], *args: Any) -> None:
    before = escrow.status
    transition(*args)
    escrow.save()
    audit_record(
        action="escrow.status_changed",
        object_type="escrow",
        object_id=escrow.public_id,
        marketplace_id=escrow.marketplace_id,
        before={"status": before},
        after={"status": escrow.status, "contract_id": escrow.contract_id},
    )


def _milestone_move(
    order: Order, milestone: Milestone, transition: Callable[..., None], *args: Any
) -> None:
    before = milestone.status
    transition(*args)
    milestone.save()
    audit_record(
        action="milestone.status_changed",
        object_type="milestone",
        object_id=milestone.public_id,
        marketplace_id=order.marketplace_id,
        before={"status": before},
        after={"status": milestone.status, "order_id": order.public_id, "ref": milestone.ref},
    )


# Deploy


def _deploy_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    order, roles = party.order, escrow.roles
    milestones = list(Milestone.objects.filter(order=order).order_by("index"))
    multi = escrow.kind == MULTI
    request = DeployRequest(
        engagement_id=escrow.engagement_id,
        title=order.title,
        description=order.description or order.title,
        roles=Roles(
            approver=roles["approver"],
            service_provider=roles["service_provider"],
            platform_address=roles["platform_address"],
            release_signer=roles["release_signer"],
            dispute_resolver=roles["dispute_resolver"],
            receiver=roles["receiver"],
        ),
        platform_fee=platform_fee_percent(escrow.platform_fee_bps),
        milestones=[
            MilestoneSpec(
                description=m.title,
                amount=Decimal(m.amount) if multi else None,
                receiver=roles["receiver"] if multi else "",
            )
            for m in milestones
        ],
        trustline_address=settings.STELLAR_USDC_ISSUER,
        amount=None if multi else Decimal(escrow.amount),
    )
    sandbox.ensure_accounts(list(roles.values()))
    deployer = party.role(StellarKey.Role.PLATFORM)
    client = tw_client()
    if multi:
        return client.deploy_multi_release(request, deployer=deployer, journal=journal)
    return client.deploy_single_release(request, deployer=deployer, journal=journal)


def _deploy_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    if escrow.status == Escrow.Status.CREATING:
        _escrow_move(escrow, escrow.deployed, result.contract_id)
        _escrow_event(EscrowCreated, escrow, order, tx_hash=result.tx_hash)
    else:  # the order was canceled meanwhile: the contract stays empty and unused
        escrow.contract_id = result.contract_id


def _deploy_fail(order: Order, escrow: Escrow, step: ChainStep, message: str) -> None:
    _escrow_move(escrow, escrow.deploy_failed)
    ChainStep.objects.filter(escrow=escrow, status=ChainStep.Status.PENDING).update(
        status=ChainStep.Status.CANCELED
    )
    if order.status in (Order.Status.ESCROW_CREATING, Order.Status.ESCROW_FUNDING):
        move(order, order.escrow_failed, reason=message, event=OrderEscrowFailed)


# Fund


def _fund_prepare(order: Order, escrow: Escrow, step: ChainStep) -> None:
    if escrow.status == Escrow.Status.CREATED:
        _escrow_move(escrow, escrow.start_funding)


def _fund_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    funder = party.role(StellarKey.Role.TREASURY)
    sandbox.ensure_usdc(funder.public_key, Decimal(escrow.amount))
    return tw_client().fund_escrow(
        contract_id=escrow.contract_id,
        funder=funder,
        amount=Decimal(escrow.amount),
        escrow_type=escrow.kind,
        journal=journal,
    )


def _fund_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    _escrow_move(escrow, escrow.funded)
    postings.move_into_escrow(order)
    _escrow_event(EscrowFunded, escrow, order, tx_hash=result.tx_hash, amount=escrow.usdc)
    move(order, order.escrow_funded)
    publish(
        BalanceReleased(
            marketplace_id=order.marketplace_id,
            aggregate_id=order.buyer.public_id,
            user_ids=(order.buyer.public_id,),
            user_id=order.buyer.public_id,
            order_id=order.public_id,
            amount=order.money,
            reason="escrow_funded",
        )
    )
    move(order, order.start_work)


def _fund_fail(order: Order, escrow: Escrow, step: ChainStep, message: str) -> None:
    if escrow.status == Escrow.Status.FUNDING:
        _escrow_move(escrow, escrow.funding_failed)
    if order.status == Order.Status.ESCROW_FUNDING:
        move(order, order.funding_failed, reason=message, event=OrderFundingFailed)


# Milestones: complete (the seller) and approve (the buyer)


def _complete_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    return tw_client().change_milestone_status(
        contract_id=escrow.contract_id,
        milestone_index=step.milestone_index or 0,
        new_status="completed",
        new_evidence=step.payload.get("evidence") or None,
        service_provider=party.seller,
        escrow_type=escrow.kind,
        journal=journal,
    )


def _complete_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    milestone = _milestone(order, step)
    if milestone.status == Milestone.Status.PENDING:
        _milestone_move(order, milestone, milestone.complete, step.payload.get("evidence", ""))
        _escrow_event(
            EscrowMilestoneCompleted,
            escrow,
            order,
            tx_hash=result.tx_hash,
            milestone_ref=milestone.ref,
        )


def _approve_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    return tw_client().approve_milestone(
        contract_id=escrow.contract_id,
        milestone_index=step.milestone_index or 0,
        approver=party.buyer,
        escrow_type=escrow.kind,
        journal=journal,
    )


def _approve_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    milestone = _milestone(order, step)
    if milestone.status == Milestone.Status.COMPLETED:
        _milestone_move(order, milestone, milestone.approve)
        _escrow_event(
            EscrowMilestoneApproved,
            escrow,
            order,
            tx_hash=result.tx_hash,
            milestone_ref=milestone.ref,
        )


def _milestone_step_fail(order: Order, escrow: Escrow, step: ChainStep, message: str) -> None:
    """The milestone keeps its status; later steps that needed this one are canceled."""
    if step.action == A.COMPLETE:
        ChainStep.objects.filter(
            escrow=escrow,
            status=ChainStep.Status.PENDING,
            action=A.APPROVE,
            milestone_index=step.milestone_index,
        ).update(status=ChainStep.Status.CANCELED)


# Release


def _release_prepare(order: Order, escrow: Escrow, step: ChainStep) -> None:
    if escrow.status == Escrow.Status.FUNDED:
        _escrow_move(escrow, escrow.start_release)


def _release_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    signer = party.role(StellarKey.Role.RELEASE_SIGNER)
    if escrow.kind == MULTI:
        return tw_client().release_milestone_funds(
            contract_id=escrow.contract_id,
            milestone_index=step.milestone_index or 0,
            release_signer=signer,
            journal=journal,
        )
    return tw_client().release_funds(
        contract_id=escrow.contract_id, release_signer=signer, journal=journal
    )


def _credit_events(order: Order, credits: dict[str, Money], source: str) -> None:
    for party, credit in credits.items():
        user = order.seller if party == "seller" else order.buyer
        if credit.amount:
            publish(
                BalanceCredited(
                    marketplace_id=order.marketplace_id,
                    aggregate_id=user.public_id,
                    user_ids=(user.public_id,),
                    user_id=user.public_id,
                    order_id=order.public_id,
                    amount=credit,
                    source=source,
                )
            )


def _release_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    milestones = _milestones(order)
    if escrow.kind == MULTI:
        paid = [m for m in milestones if m.index == step.milestone_index]
        reference = f"order:{order.public_id}:release:{paid[0].ref}"
    else:
        paid = milestones
        reference = f"order:{order.public_id}:release"
    amount = sum((Decimal(m.amount) for m in paid), Decimal(0))
    payout = release_payout(to_stroops(amount), escrow.platform_fee_bps)
    credits = postings.pay_out(
        order, payout, reference=reference, kind="escrow.release", memo=f"tx {result.tx_hash}"
    )
    for milestone in paid:
        if milestone.status == Milestone.Status.APPROVED:
            _milestone_move(order, milestone, milestone.release)
            _escrow_event(
                EscrowMilestoneReleased,
                escrow,
                order,
                tx_hash=result.tx_hash,
                milestone_ref=milestone.ref,
                amount=Money(amount.quantize(Decimal("0.01")), "USD"),
                details=_payout_details(payout, credits),
            )
    _credit_events(order, credits, "release")
    everything_paid = all(m.status == Milestone.Status.RELEASED for m in milestones)
    if everything_paid:
        _escrow_move(escrow, escrow.released)
        _escrow_event(EscrowReleased, escrow, order, tx_hash=result.tx_hash)
        move(order, order.released)
        move(order, order.close)
    elif not has_pending(escrow, A.RELEASE):
        _escrow_move(escrow, escrow.release_stopped)
        move(order, order.resume_work, reason="milestone paid")


def _release_fail(order: Order, escrow: Escrow, step: ChainStep, message: str) -> None:
    ChainStep.objects.filter(
        escrow=escrow, status=ChainStep.Status.PENDING, action=A.RELEASE
    ).update(status=ChainStep.Status.CANCELED)
    if escrow.status == Escrow.Status.RELEASING:
        _escrow_move(escrow, escrow.release_stopped)
    if order.status == Order.Status.RELEASE_REQUESTED:
        move(order, order.resume_work, reason=message, event=OrderReleaseFailed)


def _payout_details(payout: Payout, credits: dict[str, Money]) -> dict[str, Any]:
    return {
        "trustless_work_fee": str(Decimal(payout.tw_fee).scaleb(-7)),
        "platform_fee": str(Decimal(payout.platform_fee).scaleb(-7)),
        "credited": {party: credit.text() for party, credit in credits.items()},
    }


# Dispute (also the first half of a refund) and resolution


def _dispute_prepare(order: Order, escrow: Escrow, step: ChainStep) -> None:
    if step.payload.get("purpose") == "refund" and escrow.status == Escrow.Status.FUNDED:
        _escrow_move(escrow, escrow.start_refund)


def _dispute_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    signer = party.user(step.payload.get("by", "buyer"))
    if escrow.kind == MULTI:
        return tw_client().dispute_milestone(
            contract_id=escrow.contract_id,
            milestone_index=step.milestone_index or 0,
            signer=signer,
            journal=journal,
        )
    return tw_client().dispute_escrow(
        contract_id=escrow.contract_id, signer=signer, journal=journal
    )


def _dispute_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    if escrow.status == Escrow.Status.FUNDED:  # a refund stays REFUNDING
        _escrow_move(escrow, escrow.disputed)
        _escrow_event(EscrowDisputed, escrow, order, tx_hash=result.tx_hash)


def _shares(step: ChainStep) -> list[tuple[str, int]]:
    return [(str(party), int(stroops)) for party, stroops in step.payload["shares"]]


def _resolve_call(party: Party, escrow: Escrow, step: ChainStep, journal: TxJournal) -> TxResult:
    address = {"seller": escrow.roles["receiver"], "buyer": escrow.roles["buyer"]}
    distributions = [
        Distribution(address=address[who], amount=Decimal(stroops).scaleb(-7))
        for who, stroops in _shares(step)
    ]
    resolver = party.role(StellarKey.Role.DISPUTE_RESOLVER)
    if escrow.kind == MULTI:
        return tw_client().resolve_milestone_dispute(
            contract_id=escrow.contract_id,
            milestone_index=step.milestone_index or 0,
            dispute_resolver=resolver,
            distributions=distributions,
            journal=journal,
        )
    return tw_client().resolve_dispute(
        contract_id=escrow.contract_id,
        dispute_resolver=resolver,
        distributions=distributions,
        journal=journal,
    )


def _resolve_confirm(order: Order, escrow: Escrow, step: ChainStep, result: TxResult) -> None:
    purpose = step.payload["purpose"]  # "refund" or "decision"
    payout = resolution_payout(_shares(step), escrow.platform_fee_bps)
    credits = postings.pay_out(
        order,
        payout,
        reference=step.payload["reference"],
        kind=f"escrow.{purpose}",
        memo=f"tx {result.tx_hash}",
    )
    _credit_events(order, credits, "refund" if purpose == "refund" else "resolution")
    milestones = _milestones(order)
    settled = [m for m in milestones if escrow.kind != MULTI or m.index == step.milestone_index]
    for milestone in settled:
        if milestone.status != Milestone.Status.RELEASED:
            _milestone_move(order, milestone, milestone.resolve)
    if has_pending(escrow, A.DISPUTE, A.RESOLVE):
        return  # other milestones of a multi-release escrow are still being settled
    details = _payout_details(payout, credits)
    if purpose == "refund":
        _escrow_move(escrow, escrow.refunded)
        _escrow_event(EscrowRefunded, escrow, order, tx_hash=result.tx_hash, details=details)
        move(order, order.refunded)
    else:
        _escrow_move(escrow, escrow.resolved)
        _escrow_event(EscrowResolved, escrow, order, tx_hash=result.tx_hash, details=details)
        _finish_decision(order, step)
    move(order, order.close)


def _finish_decision(order: Order, step: ChainStep) -> None:
    from escrow.services.disputes import dispute_resolved

    dispute = Dispute.objects.select_for_update().get(public_id=step.payload["dispute_id"])
    if dispute.decision == Dispute.Decision.FULL_REFUND:
        move(order, order.refunded)
    else:
        outcome = (
            Order.Outcome.SPLIT
            if dispute.decision == Dispute.Decision.SPLIT
            else Order.Outcome.RELEASED
        )
        move(order, order.released, outcome)
    dispute_resolved(dispute, order)


HANDLERS: dict[str, Handler] = {
    A.DEPLOY: Handler(_deploy_call, _deploy_confirm, fail=_deploy_fail),
    A.FUND: Handler(_fund_call, _fund_confirm, prepare=_fund_prepare, fail=_fund_fail),
    A.COMPLETE: Handler(_complete_call, _complete_confirm, fail=_milestone_step_fail),
    A.APPROVE: Handler(_approve_call, _approve_confirm, fail=_milestone_step_fail),
    A.RELEASE: Handler(
        _release_call, _release_confirm, prepare=_release_prepare, fail=_release_fail
    ),
    A.DISPUTE: Handler(_dispute_call, _dispute_confirm, prepare=_dispute_prepare),
    A.RESOLVE: Handler(_resolve_call, _resolve_confirm),
}
