"""Disputes: support assigns them (OPEN -> UNDER_REVIEW) and decides (-> RESOLVED).

The API and the back-office call the same functions; the back-office also previews a
decision (`dispute_preview`: each side's net after the contract's fees, computed by the
code that plans and books the payout) and keeps staff notes.

A decision pays out what the escrow still holds (the order's amount, less milestones
already paid): FULL_RELEASE to the seller, FULL_REFUND to the buyer, or a SPLIT whose
release and refund amounts must add up to exactly that. The dispute resolver's key
resolves on chain (per unpaid milestone for multi-release escrows, each split pro rata
in whole cents); the dispute is RESOLVED, and the order closed, once the chain confirms.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from escrow.errors import InvalidAmountError
from escrow.events import DisputeDecided, DisputeEvent, DisputeResolved, DisputeUnderReview
from escrow.fees import NotSettleableError, resolution_payout, to_stroops, usdc
from escrow.models import ChainStep, Dispute, DisputeNote, Escrow, Milestone, Order
from escrow.services.common import locked_order
from escrow.services.postings import share_credit
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


def dispute_assign(
    *, dispute: Dispute, assigned_to: str, assignee: AbstractBaseUser | None = None
) -> Dispute:
    """Put an open dispute under review by `assigned_to`.

    A staff `assignee` (the back-office's "assign to me") may also take over a dispute
    under review that is not decided yet.

    Raises:
        InvalidStateError: the dispute is not OPEN (nor, for a staff assignee, an undecided
            dispute UNDER_REVIEW).
    """
    with transaction.atomic():
        order, dispute = _locked(dispute)
        take_over = (
            assignee is not None
            and dispute.status == Dispute.Status.UNDER_REVIEW
            and not dispute.decision
        )
        if dispute.status != Dispute.Status.OPEN and not take_over:
            raise InvalidStateError(
                f"A dispute in {dispute.status} cannot be assigned.",
                current_state=dispute.status,
                allowed_states=[Dispute.Status.OPEN],
            )
        before = dispute.status
        previous = dispute.assigned_to
        if take_over:
            dispute.assigned_to = assigned_to[:200]
            dispute.assigned_at = timezone.now()
        else:
            dispute.assign(assigned_to)
        dispute.assignee_id = None if assignee is None else assignee.pk
        dispute.save()
        if take_over:
            audit_record(
                action="dispute.reassigned",
                object_type="dispute",
                object_id=dispute.public_id,
                marketplace_id=dispute.marketplace_id,
                before={"assigned_to": previous},
                after={"assigned_to": dispute.assigned_to},
            )
        else:
            _audit(dispute, before, assigned_to=assigned_to)
            publish_dispute(dispute, order, DisputeUnderReview)
    return dispute


@transaction.atomic
def dispute_note_add(*, dispute: Dispute, author: AbstractBaseUser, body: str) -> DisputeNote:
    """Add a staff note to a dispute (notes are never edited; add another)."""
    text = body.strip()
    if not text:
        raise ValidationFailedError("A note needs some text.", fields={"body": ["Required."]})
    note = DisputeNote.objects.create(dispute=dispute, author_id=author.pk, body=text)
    audit_record(
        action="dispute.note_added",
        object_type="dispute",
        object_id=dispute.public_id,
        marketplace_id=dispute.marketplace_id,
        after={"note_id": note.pk, "body": text[:500]},
    )
    return note


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
        _require_undecided(dispute)
        escrow = Escrow.objects.select_for_update().get(order=order)
        unpaid = list(
            Milestone.objects.select_for_update()
            .filter(order=order)
            .exclude(status=Milestone.Status.RELEASED)
            .order_by("index")
        )
        plan = _plan(escrow, unpaid, decision, release_amount, refund_amount)
        dispute.decision = decision
        dispute.release_amount = plan.release.amount
        dispute.refund_amount = plan.refund.amount
        dispute.decision_note = note
        dispute.decided_by = f"{current_actor().kind}:{current_actor().id}"[:150]
        dispute.decided_at = timezone.now()
        dispute.save()
        for milestone, shares in plan.distributions:
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
                "release_amount": plan.release.text(),
                "refund_amount": plan.refund.text(),
                "held": plan.held.text(),
            },
            reason=note,
        )
        publish_dispute(dispute, order, DisputeDecided)
        schedule(escrow)
    return dispute


def _require_undecided(dispute: Dispute) -> None:
    if dispute.status != Dispute.Status.UNDER_REVIEW or dispute.decision:
        raise InvalidStateError(
            "This dispute was decided already; the payout is on its way."
            if dispute.decision
            else f"A dispute in {dispute.status} cannot be resolved.",
            current_state=dispute.status,
            allowed_states=[Dispute.Status.UNDER_REVIEW],
            decision=dispute.decision or None,
        )


@dataclass(frozen=True)
class _Plan:
    held: Money  # what the escrow still holds (USD)
    release: Money
    refund: Money
    # One distribution per resolve call: (milestone or None, [[party, stroops], ...]).
    distributions: list[tuple[Milestone | None, list[list[Any]]]]
    platform_fee_bps: int


def _plan(
    escrow: Escrow,
    unpaid: list[Milestone],
    decision: str,
    release_amount: Money | None,
    refund_amount: Money | None,
) -> _Plan:
    """How a decision pays out what the escrow holds (validated: see dispute_resolve)."""
    held = Money(sum((Decimal(m.amount) for m in unpaid), Decimal(0)), "USD")
    release, refund = _amounts(decision, held, release_amount, refund_amount)
    distributions = _per_milestone(escrow, unpaid, release, refund)
    for _, shares in distributions:
        _check_settleable(shares, escrow.platform_fee_bps)
    return _Plan(held, release, refund, distributions, escrow.platform_fee_bps)


@dataclass(frozen=True)
class SidePreview:
    """One side of a decision: its share of the escrow, the contract's fees on it, what
    the contract pays its wallet, and what its balance in the ledger is credited."""

    party: str  # "seller" or "buyer"
    gross: Money  # USD
    fees: Money  # USDC, Trustless Work's and the platform's
    net_on_chain: Money  # USDC
    credited: Money  # USD


@dataclass(frozen=True)
class ResolutionPreview:
    decision: str
    held: Money
    release: Money
    refund: Money
    platform_fee_bps: int
    trustless_work_fee: Money  # USDC
    platform_fee: Money  # USDC
    sides: tuple[SidePreview, ...]

    def fingerprint(self) -> str:
        """A digest of every figure shown, so a confirmation can prove it saw these."""
        return hashlib.sha256(repr(self).encode()).hexdigest()


def dispute_preview(
    *,
    dispute: Dispute,
    decision: str,
    release_amount: Money | None = None,
    refund_amount: Money | None = None,
) -> ResolutionPreview:
    """What `dispute_resolve` with these arguments would pay each side, after the
    contract's fees, and credit to their balances; nothing is written.

    Raises what dispute_resolve raises for the same arguments.
    """
    dispute = Dispute.objects.get(pk=dispute.pk)
    _require_undecided(dispute)
    escrow = Escrow.objects.get(order_id=dispute.order_id)
    unpaid = list(
        Milestone.objects.filter(order_id=dispute.order_id)
        .exclude(status=Milestone.Status.RELEASED)
        .order_by("index")
    )
    plan = _plan(escrow, unpaid, decision, release_amount, refund_amount)
    tw_fee = platform_fee = 0
    gross: dict[str, int] = defaultdict(int)
    net: dict[str, int] = defaultdict(int)
    credited: dict[str, Money] = defaultdict(lambda: Money.zero("USD"))
    for _, shares in plan.distributions:
        payout = resolution_payout([(str(p), int(a)) for p, a in shares], plan.platform_fee_bps)
        tw_fee += payout.tw_fee
        platform_fee += payout.platform_fee
        for share in payout.shares:
            gross[share.party] += share.gross
            net[share.party] += share.net
            credited[share.party] += share_credit(share)
    sides = tuple(
        SidePreview(
            party=party,
            gross=Money(usdc(gross[party]).amount.quantize(Decimal("0.01")), "USD"),
            fees=usdc(gross[party] - net[party]),
            net_on_chain=usdc(net[party]),
            credited=credited[party],
        )
        for party in ("seller", "buyer")
        if party in gross
    )
    return ResolutionPreview(
        decision=decision,
        held=plan.held,
        release=plan.release,
        refund=plan.refund,
        platform_fee_bps=plan.platform_fee_bps,
        trustless_work_fee=usdc(tw_fee),
        platform_fee=usdc(platform_fee),
        sides=sides,
    )


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
