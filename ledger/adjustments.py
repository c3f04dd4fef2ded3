"""Manual adjustments: staff correct a user's available balance by hand, with a reason.

- An adjustment moves money only as one balanced entry against the marketplace's
  `adjustments` system account (ledger.services.adjustment_post), referenced
  `adjustment:<id>`, so it is posted at most once however often approval is retried.
- One of at most settings.ADJUSTMENT_APPROVAL_THRESHOLD is posted when requested. A larger
  one waits (PENDING_APPROVAL) until a second staff member approves it; the requester can
  never approve their own (checked here, and by a database constraint). Anyone allowed to
  approve may reject it instead, the requester included (a withdrawn request), with a reason.
- A debit never takes a user below zero: the posting path refuses it (InsufficientFundsError)
  at posting time, under the account's lock, whatever the balance was when it was requested.
- Each step writes an audit row; a posted adjustment publishes `adjustment.posted`.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from ledger.errors import InsufficientFundsError, SelfApprovalError
from ledger.events import AdjustmentPosted
from ledger.models import Account, Adjustment, ReconciliationCase
from ledger.money import Money
from ledger.selectors import available_balance
from ledger.services import adjustment_post, user_account
from orchestrator.audit import audit_record
from orchestrator.errors import InvalidStateError, ValidationFailedError
from orchestrator.events import publish
from orchestrator.models import MarketplaceUser

PENDING = Adjustment.Status.PENDING_APPROVAL


def needs_approval(amount: Money) -> bool:
    return amount.amount > settings.ADJUSTMENT_APPROVAL_THRESHOLD


def _snapshot(adjustment: Adjustment) -> dict[str, Any]:
    return {
        "id": adjustment.public_id,
        "user_id": adjustment.user.public_id,
        "direction": adjustment.direction,
        "amount": adjustment.money.text(),
        "currency": adjustment.currency,
        "status": adjustment.status,
        "case_id": adjustment.case.public_id if adjustment.case else "",
    }


def _audit(adjustment: Adjustment, action: str, reason: str) -> None:
    audit_record(
        action=f"adjustment.{action}",
        object_type="adjustment",
        object_id=adjustment.public_id,
        marketplace_id=adjustment.marketplace_id,
        after=_snapshot(adjustment),
        reason=reason,
    )


def _required(text: str, field: str) -> str:
    if not text.strip():
        raise ValidationFailedError(f"A {field} is required.", fields={field: ["Required."]})
    return text.strip()


@transaction.atomic
def adjustment_request(
    *,
    user: MarketplaceUser,
    amount: Money,
    direction: str,
    reason: str,
    requested_by: User,
    case: ReconciliationCase | None = None,
) -> Adjustment:
    """Ask for an adjustment; posted at once unless it is above the approval threshold.

    Raises:
        ValidationFailedError: no reason, a non-positive amount, an unknown direction, or a
            case of another marketplace.
        InsufficientFundsError: a debit larger than the user's available balance.
    """
    reason = _required(reason, "reason")
    if direction not in Adjustment.Direction.values:
        raise ValidationFailedError(
            "Direction is credit or debit.", fields={"direction": [direction]}
        )
    if amount.amount <= 0:
        raise ValidationFailedError("The amount must be positive.", fields={"amount": ["> 0"]})
    if case is not None and case.marketplace_id not in (None, user.marketplace_id):
        raise ValidationFailedError(
            "The case belongs to another marketplace.", fields={"case": [case.public_id]}
        )
    if direction == Adjustment.Direction.DEBIT:
        _check_funds(user, amount)
    adjustment = Adjustment.objects.create(
        marketplace_id=user.marketplace_id,
        user=user,
        direction=direction,
        amount=amount.amount,
        currency=amount.currency,
        reason=reason,
        case=case,
        status=PENDING,
        requested_by=requested_by,
    )
    _audit(adjustment, "requested", reason)
    if not needs_approval(amount):
        _post(adjustment, approved_by=None)
    return adjustment


@transaction.atomic
def adjustment_approve(*, adjustment: Adjustment, approved_by: User) -> Adjustment:
    """A second staff member approves a pending adjustment, which is posted now.

    Raises:
        InvalidStateError: the adjustment is not waiting for approval.
        SelfApprovalError: `approved_by` requested it.
        InsufficientFundsError: a debit the user's available balance no longer covers; it
            stays pending (reject it, or approve it again later).
    """
    adjustment = _locked_pending(adjustment)
    if adjustment.requested_by_id == approved_by.pk:
        raise SelfApprovalError(
            "A second staff member must approve this adjustment, not its requester.",
            adjustment_id=adjustment.public_id,
        )
    return _post(adjustment, approved_by=approved_by)


@transaction.atomic
def adjustment_reject(*, adjustment: Adjustment, rejected_by: User, reason: str) -> Adjustment:
    """Refuse (or, by its requester, withdraw) a pending adjustment; nothing is posted.

    Raises:
        ValidationFailedError: no reason.
        InvalidStateError: the adjustment is not waiting for approval.
    """
    reason = _required(reason, "reason")
    adjustment = _locked_pending(adjustment)
    adjustment.status = Adjustment.Status.REJECTED
    adjustment.rejected_by = rejected_by
    adjustment.rejection_reason = reason
    adjustment.decided_at = timezone.now()
    adjustment.save(update_fields=["status", "rejected_by", "rejection_reason", "decided_at"])
    _audit(adjustment, "rejected", reason)
    return adjustment


def _locked_pending(adjustment: Adjustment) -> Adjustment:
    adjustment = (
        Adjustment.objects.select_for_update(of=("self",))
        .select_related("user", "case")
        .get(pk=adjustment.pk)
    )
    if adjustment.status != PENDING:
        raise InvalidStateError(
            f"Adjustment {adjustment.public_id} is {adjustment.status}.",
            current_state=adjustment.status,
            allowed_states=[PENDING],
        )
    return adjustment


def _check_funds(user: MarketplaceUser, amount: Money) -> None:
    account = user_account(user=user, kind=Account.Kind.AVAILABLE, currency=amount.currency)
    available = available_balance(account=account)
    if available < amount:
        raise InsufficientFundsError(
            "The user's available balance does not cover this debit.",
            available=available.text(),
            requested=amount.text(),
            currency=amount.currency,
        )


def _post(adjustment: Adjustment, *, approved_by: User | None) -> Adjustment:
    entry = adjustment_post(
        user=adjustment.user,
        amount=adjustment.money,
        direction=adjustment.direction,
        reason=adjustment.reason,
        reference=adjustment.reference,
    )
    adjustment.status = Adjustment.Status.POSTED
    adjustment.entry = entry
    adjustment.approved_by = approved_by
    adjustment.decided_at = timezone.now()
    adjustment.save(update_fields=["status", "entry", "approved_by", "decided_at"])
    how = f"approved by {approved_by.get_username()}" if approved_by else "within the threshold"
    _audit(adjustment, "posted", how)
    publish(
        AdjustmentPosted(
            marketplace_id=adjustment.marketplace_id,
            aggregate_id=adjustment.public_id,
            user_ids=(adjustment.user.public_id,),
            user_id=adjustment.user.public_id,
            direction=adjustment.direction,
            amount=adjustment.money,
            entry_id=entry.public_id,
            reference=entry.reference,
        )
    )
    return adjustment
