"""Withdrawals: money out through an Airtm payout to the user's linked Airtm account.

Ledger effects, each exactly once by its reference (DESIGN.md §3):
- requested  (`withdrawal:<id>:requested`): user.available -A, user.withdrawal_pending +A
- completed  (`withdrawal:<id>:completed`): user.withdrawal_pending -A, clearing:airtm +A
- returned   (`withdrawal:<id>:returned`):  user.withdrawal_pending -A, user.available +A
  (the payout failed or was canceled)

The payout's `code` is the withdrawal's id: Airtm refuses a second payout with it, and an
uncertain create is looked up by it, so a retried request, task or janitor never pays twice.
"""

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django_fsm import can_proceed

from ledger.errors import InvalidCurrencyError
from ledger.models import Account
from ledger.money import Money
from ledger.services import Leg, entry_post, system_account, user_account
from orchestrator.audit import audit_record
from orchestrator.errors import InvalidStateError
from orchestrator.events import publish
from orchestrator.models import Marketplace, MarketplaceUser
from providers.clients.airtm import RECIPIENT_REASON_CODES, Payout
from providers.clients.errors import ProviderError, ProviderRejectedError
from providers.errors import AirtmUserInvalidError, AirtmUserNotLinkedError, DestinationInvalidError
from providers.events import WITHDRAWAL_EVENTS
from providers.models import AirtmLink, Withdrawal, snapshot
from providers.services.common import (
    airtm_client,
    audit_transition,
    lease,
    leased,
    locked,
    note_provider_problem,
    note_status_mismatch,
    retry_later,
)
from providers.services.topups import CLEARING

AIRTM_CURRENCY = "USD"  # Airtm pays out US dollars

S = Withdrawal.Status
# Airtm payout status -> the withdrawal status it means; anything else is "in progress".
PAYOUT_TO_WITHDRAWAL = {
    "CREATED": S.CREATED,
    "COMMITTED": S.COMMITTED,
    "PENDING": S.PENDING_USER_ACTION,
    "PENDING_USER_ACTION": S.PENDING_USER_ACTION,
    "BRIDGE_USER_SIGNUP_PENDING": S.PENDING_USER_ACTION,
    "COMPLETED": S.COMPLETED,
    "FAILED": S.FAILED,
    "CANCELED": S.CANCELED,
}
CANCELABLE = (S.CREATED, S.PENDING_USER_ACTION)  # Airtm cancels CREATED and PENDING payouts


# --- Start -------------------------------------------------------------------------------------


def withdrawal_create(
    *,
    marketplace: Marketplace,
    user: MarketplaceUser,
    amount: Money,
    description: str = "",
    commit: bool = False,
    destination_email: str = "",
    metadata: dict[str, Any] | None = None,
) -> Withdrawal:
    """Hold the amount (available -> withdrawal_pending), then create the Airtm payout.

    Raises:
        AirtmUserNotLinkedError: the user has no linked Airtm account.
        DestinationInvalidError: `destination_email` is not the linked account.
        InsufficientFundsError: not enough available; nothing was written.
        AirtmUserInvalidError / ProviderRejectedError: Airtm refused the payout; the
            withdrawal is WITHDRAWAL_FAILED and the funds are back in available.
    Uncertain provider outcomes do not raise: the withdrawal waits in WITHDRAWAL_CREATED
    with `last_error` set, and a task (then the janitor) completes it.
    """
    if amount.currency != AIRTM_CURRENCY:
        raise InvalidCurrencyError("Airtm withdrawals are paid in USD.", currency=amount.currency)
    link = AirtmLink.objects.filter(user=user).first()
    if link is None:
        raise AirtmUserNotLinkedError(
            "Link the user's Airtm account first (POST /users/{id}/airtm/link).",
            user_id=user.public_id,
        )
    if destination_email and destination_email.casefold() != link.email.casefold():
        raise DestinationInvalidError(
            "Withdrawals go to the user's linked Airtm account.",
            destination_email=destination_email,
        )
    with transaction.atomic():
        withdrawal = Withdrawal.objects.create(
            marketplace=marketplace,
            user=user,
            amount=amount.amount,
            currency=amount.currency,
            description=description or f"Withdrawal from {marketplace.name}",
            destination_email=link.email,
            commit_requested=commit,
            metadata=metadata or {},
        )
        entry_post(
            marketplace_id=marketplace.pk,
            reference=f"withdrawal:{withdrawal.public_id}:requested",
            kind="withdrawal.requested",
            legs=[
                Leg.debit(_user_account(withdrawal, Account.Kind.AVAILABLE), amount),
                Leg.credit(_user_account(withdrawal, Account.Kind.WITHDRAWAL_PENDING), amount),
            ],
            metadata={"withdrawal_id": withdrawal.public_id},
        )
        audit_record(
            action="withdrawal.created",
            object_type="withdrawal",
            object_id=withdrawal.public_id,
            marketplace_id=marketplace.pk,
            after=snapshot(withdrawal),
        )
        _publish(withdrawal, previous="")
    return withdrawal_submit(withdrawal_id=withdrawal.pk, raise_rejection=True)


def withdrawal_commit(*, withdrawal: Withdrawal) -> Withdrawal:
    """Commit a WITHDRAWAL_CREATED payout (Airtm then executes it). Only once.

    Raises:
        InvalidStateError: not in WITHDRAWAL_CREATED, or a commit was asked for already.
    """
    with transaction.atomic():
        withdrawal = locked(Withdrawal, withdrawal.pk)
        if withdrawal.status != S.CREATED or withdrawal.commit_requested:
            raise InvalidStateError(
                "This withdrawal was committed already."
                if withdrawal.commit_requested
                else f"A withdrawal in {withdrawal.status} cannot be committed.",
                current_state=withdrawal.status,
                allowed_states=[S.CREATED],
            )
        withdrawal.commit_requested = True
        withdrawal.save(update_fields=["commit_requested", "updated_at"])
        audit_record(
            action="withdrawal.commit_requested",
            object_type="withdrawal",
            object_id=withdrawal.public_id,
            marketplace_id=withdrawal.marketplace_id,
            after=snapshot(withdrawal),
        )
    return withdrawal_submit(withdrawal_id=withdrawal.pk, raise_rejection=True)


def withdrawal_submit(*, withdrawal_id: int, raise_rejection: bool = False) -> Withdrawal:
    """Create (and, if asked, commit) the payout of a WITHDRAWAL_CREATED withdrawal.

    Safe to call any number of times, from the request, a task or the janitor.
    """
    with lease(Withdrawal, withdrawal_id) as taken:
        withdrawal = Withdrawal.objects.select_related("user").get(pk=withdrawal_id)
        if not taken or withdrawal.status != S.CREATED:
            return withdrawal
        client = airtm_client()
        try:
            if not withdrawal.airtm_payout_id:
                payout = client.create_payout(
                    code=withdrawal.code,
                    email=withdrawal.destination_email,
                    amount=withdrawal.money.amount,
                    notes=withdrawal.description,
                    commit=withdrawal.commit_requested,
                )
                withdrawal = withdrawal_apply(withdrawal_id=withdrawal_id, payout=payout)
            if (
                withdrawal.status == S.CREATED
                and withdrawal.commit_requested
                and withdrawal.airtm_payout_id
            ):
                payout = client.commit_payout(withdrawal.airtm_payout_id)
                withdrawal = withdrawal_apply(withdrawal_id=withdrawal_id, payout=payout)
        except ProviderRejectedError as exc:
            withdrawal = _apply_rejection(withdrawal_id, exc)
            if raise_rejection:
                raise _rejection_error(withdrawal, exc) from exc
        except ProviderError as exc:
            note_provider_problem(Withdrawal, withdrawal_id, f"{exc.code}: {exc.message}")
            retry_later(
                "providers.tasks.withdrawal_submit_task",
                attempts=withdrawal.sync_attempts,
                withdrawal_id=withdrawal_id,
            )
            withdrawal = Withdrawal.objects.select_related("user").get(pk=withdrawal_id)
        return withdrawal


def _apply_rejection(withdrawal_id: int, exc: ProviderRejectedError) -> Withdrawal:
    """A refused create fails the withdrawal (funds back); a refused commit keeps it CREATED."""
    with transaction.atomic():
        withdrawal = locked(Withdrawal, withdrawal_id)
        withdrawal.last_error = f"{exc.code}: {exc.message}"[:500]
        if withdrawal.status != S.CREATED:
            withdrawal.save()
            return withdrawal
        if withdrawal.airtm_payout_id:  # the commit was refused: the marketplace decides
            withdrawal.commit_requested = False
            withdrawal.save()
            return withdrawal
        before = withdrawal.status
        withdrawal.fail(
            reason=f"Airtm refused the payout: {exc.message}", reason_code=exc.reason_code
        )
        withdrawal.save()
        _return_funds(withdrawal)
        audit_transition(withdrawal, before=before, reason=withdrawal.failure_reason)
        _publish(withdrawal, previous=before)
        return withdrawal


def _rejection_error(withdrawal: Withdrawal, exc: ProviderRejectedError) -> Exception:
    details = {
        "withdrawal_id": withdrawal.public_id,
        "status": withdrawal.status,
        "reason_code": exc.reason_code or None,
    }
    if exc.reason_code in RECIPIENT_REASON_CODES:
        return AirtmUserInvalidError(f"Airtm cannot pay this account: {exc.message}", **details)
    exc.details.update(details)
    return exc


# --- Confirm -----------------------------------------------------------------------------------


def withdrawal_apply(
    *, withdrawal_id: int, payout: Payout, canceled_by: str = "airtm"
) -> Withdrawal:
    """Bring the withdrawal to what the payout (as just read from Airtm) says. Forward only."""
    with transaction.atomic():
        withdrawal = locked(Withdrawal, withdrawal_id)
        if payout.code != withdrawal.code:
            raise ValueError(f"payout {payout.id} is not withdrawal {withdrawal.public_id}'s")
        withdrawal.airtm_payout_id = withdrawal.airtm_payout_id or payout.id
        withdrawal.airtm_status = payout.status
        withdrawal.airtm_fee = payout.airtm_fee
        withdrawal.net_amount = payout.net_amount
        withdrawal.last_error = ""
        before = withdrawal.status
        target = PAYOUT_TO_WITHDRAWAL.get(payout.status, S.PENDING)
        if withdrawal.is_final:
            note_status_mismatch(withdrawal, target)
        elif target != before:
            _move(withdrawal, target, payout, canceled_by)
        withdrawal.save()
        if withdrawal.status != before:
            audit_transition(withdrawal, before=before, reason=f"Airtm payout is {payout.status}")
            _publish(withdrawal, previous=before)
        return withdrawal


def _move(withdrawal: Withdrawal, target: str, payout: Payout, canceled_by: str) -> None:
    transitions: dict[str, Callable[[], None]] = {
        S.COMMITTED: withdrawal.commit,
        S.PENDING: withdrawal.process,
        S.PENDING_USER_ACTION: withdrawal.await_user,
    }
    if target in transitions:
        if can_proceed(transitions[target]):  # a stale read never moves a state backwards
            transitions[target]()
    elif target == S.COMPLETED:
        withdrawal.complete()
        _settle(withdrawal)
    elif target == S.FAILED:
        withdrawal.fail(
            reason=payout.reason_description or "Airtm reported the payout failed.",
            reason_code=payout.reason_code or "",
        )
        _return_funds(withdrawal)
    elif target == S.CANCELED:
        withdrawal.cancel(by=canceled_by)
        _return_funds(withdrawal)


def _user_account(withdrawal: Withdrawal, kind: str) -> Account:
    return user_account(user=withdrawal.user, kind=kind, currency=withdrawal.currency)


def _settle(withdrawal: Withdrawal) -> None:
    amount = withdrawal.money
    clearing = system_account(
        marketplace_id=withdrawal.marketplace_id, code=CLEARING, currency=amount.currency
    )
    entry_post(
        marketplace_id=withdrawal.marketplace_id,
        reference=f"withdrawal:{withdrawal.public_id}:completed",
        kind="withdrawal.completed",
        legs=[
            Leg.debit(_user_account(withdrawal, Account.Kind.WITHDRAWAL_PENDING), amount),
            Leg.credit(clearing, amount),
        ],
        memo=f"Airtm payout {withdrawal.airtm_payout_id}",
        metadata={"withdrawal_id": withdrawal.public_id, "payout_id": withdrawal.airtm_payout_id},
    )


def _return_funds(withdrawal: Withdrawal) -> None:
    amount = withdrawal.money
    entry_post(
        marketplace_id=withdrawal.marketplace_id,
        reference=f"withdrawal:{withdrawal.public_id}:returned",
        kind=f"withdrawal.{withdrawal.status.removeprefix('WITHDRAWAL_').lower()}",
        legs=[
            Leg.debit(_user_account(withdrawal, Account.Kind.WITHDRAWAL_PENDING), amount),
            Leg.credit(_user_account(withdrawal, Account.Kind.AVAILABLE), amount),
        ],
        memo=withdrawal.failure_reason or f"canceled by {withdrawal.canceled_by}",
        metadata={"withdrawal_id": withdrawal.public_id},
    )


def withdrawal_sync(*, withdrawal_id: int) -> Withdrawal:
    """Read the payout from Airtm and apply it (refresh, webhook and janitor use it).

    Raises:
        ProviderError: Airtm could not be read; nothing changed.
    """
    withdrawal = Withdrawal.objects.select_related("user").get(pk=withdrawal_id)
    if withdrawal.is_final:
        return withdrawal
    client = airtm_client()
    if withdrawal.airtm_payout_id:
        payout = client.get_payout(withdrawal.airtm_payout_id)
    else:
        found = client.find_payout(withdrawal.code)
        if found is None:
            return withdrawal_submit(withdrawal_id=withdrawal_id)
        payout = found
    withdrawal = withdrawal_apply(withdrawal_id=withdrawal_id, payout=payout)
    if withdrawal.status == S.CREATED and withdrawal.commit_requested:
        withdrawal = withdrawal_submit(withdrawal_id=withdrawal_id)  # finish a lost commit
    return withdrawal


# --- Cancel ------------------------------------------------------------------------------------


def withdrawal_cancel(*, withdrawal: Withdrawal, by: str = "user") -> Withdrawal:
    """Cancel a payout Airtm has not executed (CREATED, or waiting for the user's action).

    Raises:
        InvalidStateError: already executing or finished (the answer names the state).
        ProviderBusyError: another request is talking to Airtm about it.
        ProviderError: Airtm could not be reached; nothing changed.
    """
    _check_cancelable(withdrawal)
    with leased(Withdrawal, withdrawal.pk, withdrawal.public_id):
        withdrawal = Withdrawal.objects.select_related("user").get(pk=withdrawal.pk)
        _check_cancelable(withdrawal)
        client = airtm_client()
        payout_id = withdrawal.airtm_payout_id
        if not payout_id:
            found = client.find_payout(withdrawal.code)
            payout_id = found.id if found is not None else ""
        if not payout_id:
            return _cancel_locally(withdrawal.pk, by)
        try:
            payout = client.cancel_payout(payout_id)
        except ProviderRejectedError:
            # Airtm is executing it (415055): apply what it is, then refuse the cancel.
            withdrawal = withdrawal_apply(
                withdrawal_id=withdrawal.pk, payout=client.get_payout(payout_id)
            )
            _check_cancelable(withdrawal)
            raise
        return withdrawal_apply(withdrawal_id=withdrawal.pk, payout=payout, canceled_by=by)


def _check_cancelable(withdrawal: Withdrawal) -> None:
    if withdrawal.status not in CANCELABLE:
        raise InvalidStateError(
            f"A withdrawal in {withdrawal.status} cannot be canceled.",
            current_state=withdrawal.status,
            allowed_states=list(CANCELABLE),
        )


def _cancel_locally(withdrawal_id: int, by: str) -> Withdrawal:
    """No payout exists at Airtm (checked by code under the lease): cancel here only."""
    with transaction.atomic():
        withdrawal = locked(Withdrawal, withdrawal_id)
        _check_cancelable(withdrawal)
        before = withdrawal.status
        withdrawal.cancel(by=by)
        withdrawal.save()
        _return_funds(withdrawal)
        audit_transition(withdrawal, before=before, reason=f"canceled by {by}")
        _publish(withdrawal, previous=before)
        return withdrawal


# --- Events ------------------------------------------------------------------------------------


def _publish(withdrawal: Withdrawal, *, previous: str) -> None:
    extra: dict[str, Any] = {}
    if withdrawal.status == S.FAILED:
        extra["reason_code"] = withdrawal.reason_code
    elif withdrawal.status == S.CANCELED:
        extra["canceled_by"] = withdrawal.canceled_by
    publish(
        WITHDRAWAL_EVENTS[withdrawal.status](
            marketplace_id=withdrawal.marketplace_id,
            aggregate_id=withdrawal.public_id,
            user_ids=(withdrawal.user.public_id,),
            user_id=withdrawal.user.public_id,
            amount=withdrawal.money,
            status=withdrawal.status,
            previous_status=previous,
            reason=withdrawal.failure_reason,
            **extra,
        )
    )
