"""Top-ups: money in through an Airtm payin, credited to the user's available balance once.

The payin's `code` is the top-up's id, so an uncertain create is looked up, never repeated.
The balance is credited by the entry `topup:<id>:succeeded`, whichever of the webhook, a
refresh, the redirect callback or the janitor first sees the payin CONFIRMED; the others
find the state machine already final and the reference already posted.
"""

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from ledger.models import Account
from ledger.money import Money
from ledger.services import Leg, entry_post, system_account, user_account
from orchestrator.audit import audit_record
from orchestrator.errors import InvalidStateError
from orchestrator.events import publish
from orchestrator.models import Marketplace, MarketplaceUser
from providers.clients.airtm import Payin
from providers.clients.errors import ProviderError, ProviderRejectedError
from providers.events import TOPUP_EVENTS, TopUpSucceeded
from providers.models import TopUp, snapshot
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

logger = logging.getLogger(__name__)

CLEARING = "provider_clearing:airtm"
AIRTM_FEES = "provider_fees:airtm"

# Airtm payin status -> the top-up status it means. Unknown statuses mean "still going".
PAYIN_TO_TOPUP = {
    "CREATED": TopUp.Status.AWAITING_USER_CONFIRMATION,
    "PROCESSING": TopUp.Status.PROCESSING,
    "CONFIRMED": TopUp.Status.SUCCEEDED,
    "FAILED": TopUp.Status.FAILED,
    "BRIDGE_FAILED": TopUp.Status.FAILED,
    "CANCELED": TopUp.Status.CANCELED,
    "BRIDGE_CANCELED": TopUp.Status.CANCELED,
}


def callback_url(topup: TopUp, outcome: str) -> str:
    """Where Airtm sends the payer back; our callback then redirects to the marketplace."""
    return f"{settings.PUBLIC_BASE_URL}/api/v1/topups/{topup.public_id}/callback?status={outcome}"


# --- Start -------------------------------------------------------------------------------------


def topup_create(
    *,
    marketplace: Marketplace,
    user: MarketplaceUser,
    amount: Money,
    description: str = "",
    return_url: str = "",
    cancel_url: str = "",
    metadata: dict[str, Any] | None = None,
) -> TopUp:
    """Record the top-up, then ask Airtm for the payin (see topup_submit).

    Raises:
        ProviderRejectedError: Airtm refused the payin; the top-up is TOPUP_FAILED.
    Uncertain provider outcomes do not raise: the top-up stays TOPUP_CREATED with
    `last_error` set, and a task (then the janitor) completes it.
    """
    with transaction.atomic():
        topup = TopUp.objects.create(
            marketplace=marketplace,
            user=user,
            amount=amount.amount,
            currency=amount.currency,
            description=description or f"Top-up for {marketplace.name}",
            return_url=return_url,
            cancel_url=cancel_url,
            metadata=metadata or {},
            expires_at=timezone.now() + timedelta(hours=settings.TOPUP_EXPIRY_HOURS),
        )
        audit_record(
            action="topup.created",
            object_type="topup",
            object_id=topup.public_id,
            marketplace_id=marketplace.pk,
            after=snapshot(topup),
        )
        _publish(topup, previous="")
    return topup_submit(topup_id=topup.pk, raise_rejection=True)


def topup_submit(*, topup_id: int, raise_rejection: bool = False) -> TopUp:
    """Create the Airtm payin of a TOPUP_CREATED top-up (exactly once, by its code)."""
    with lease(TopUp, topup_id) as taken:
        topup = TopUp.objects.select_related("user").get(pk=topup_id)
        if not taken or topup.status != TopUp.Status.CREATED or topup.airtm_payin_id:
            return topup
        try:
            payin = airtm_client().create_payin(
                code=topup.code,
                amount=topup.money.amount,
                description=topup.description,
                confirmation_uri=callback_url(topup, "confirmed"),
                cancel_uri=callback_url(topup, "canceled"),
            )
        except ProviderRejectedError as exc:
            topup = _apply_rejection(topup_id, exc)
            if raise_rejection:
                exc.details["topup_id"] = topup.public_id
                exc.details["status"] = topup.status
                raise
            return topup
        except ProviderError as exc:
            note_provider_problem(TopUp, topup_id, f"{exc.code}: {exc.message}")
            retry_later(
                "providers.tasks.topup_submit_task", attempts=topup.sync_attempts, topup_id=topup_id
            )
            return TopUp.objects.select_related("user").get(pk=topup_id)
        return topup_apply(topup_id=topup_id, payin=payin)


def _apply_rejection(topup_id: int, exc: ProviderRejectedError) -> TopUp:
    with transaction.atomic():
        topup = locked(TopUp, topup_id)
        if topup.status == TopUp.Status.CREATED:
            before = topup.status
            topup.fail(reason=f"Airtm refused the payin: {exc.message}")
            topup.last_error = f"{exc.code}: {exc.message}"[:500]
            topup.save()
            audit_transition(topup, before=before, reason=topup.failure_reason)
            _publish(topup, previous=before)
        return topup


# --- Confirm -----------------------------------------------------------------------------------


def topup_apply(*, topup_id: int, payin: Payin, canceled_by: str = "airtm") -> TopUp:
    """Bring the top-up to what the payin (as just read from Airtm) says. Forward only.

    Statuses only move forward along the state machine, so a stale read or a webhook that
    arrives late never undoes a later fact.
    """
    stray = False
    with transaction.atomic():
        topup = locked(TopUp, topup_id)
        if payin.code != topup.code:
            raise ValueError(f"payin {payin.id} is not top-up {topup.public_id}'s")
        topup.airtm_payin_id = topup.airtm_payin_id or payin.id
        topup.airtm_status = payin.status
        topup.confirmation_uri = topup.confirmation_uri or airtm_client().checkout_url(payin.id)
        topup.payer_email = payin.airtm_user_email or topup.payer_email
        topup.last_error = ""
        target = PAYIN_TO_TOPUP.get(payin.status)
        before = topup.status
        if topup.is_final:
            # We gave up on it (canceled) but Airtm still has a live payin: close it there,
            # so nobody can pay a top-up we will never credit.
            stray = topup.status != TopUp.Status.SUCCEEDED and payin.status not in (
                "CONFIRMED",
                "CANCELED",
                "FAILED",
                "BRIDGE_FAILED",
                "BRIDGE_CANCELED",
            )
            note_status_mismatch(topup, target)
        elif target is not None and target != before:
            _move(topup, target, payin, canceled_by)
        topup.save()
        if topup.status != before:
            audit_transition(topup, before=before, reason=f"Airtm payin is {payin.status}")
            _publish(topup, previous=before)
    if stray:
        _cancel_at_airtm(topup)
    return topup


def _move(topup: TopUp, target: str, payin: Payin, canceled_by: str) -> None:
    if target == TopUp.Status.AWAITING_USER_CONFIRMATION and can_proceed(topup.await_user):
        topup.await_user()
    elif target == TopUp.Status.PROCESSING and can_proceed(topup.process):
        topup.process()
    elif target == TopUp.Status.SUCCEEDED:
        topup.succeed()
        _credit(topup, payin)
    elif target == TopUp.Status.FAILED:
        topup.fail(reason=payin.failure_reason or "Airtm reported the payin failed.")
    elif target == TopUp.Status.CANCELED:
        topup.cancel(by=canceled_by)


def _credit(topup: TopUp, payin: Payin) -> None:
    """clearing:airtm -gross, provider_fees:airtm +fee, user.available +net (net = gross - fee)."""
    gross = topup.money
    fee = Money(Decimal(payin.airtm_fee or 0), topup.currency)
    net = gross - fee
    topup.airtm_fee = fee.amount
    topup.net_amount = net.amount
    mkt = topup.marketplace_id
    legs = [
        Leg.debit(
            system_account(marketplace_id=mkt, code=CLEARING, currency=gross.currency), gross
        ),
        Leg.credit(
            user_account(user=topup.user, kind=Account.Kind.AVAILABLE, currency=net.currency), net
        ),
    ]
    if fee.amount:
        legs.append(
            Leg.credit(
                system_account(marketplace_id=mkt, code=AIRTM_FEES, currency=fee.currency), fee
            )
        )
    entry_post(
        marketplace_id=mkt,
        reference=f"topup:{topup.public_id}:succeeded",
        kind="topup.succeeded",
        legs=legs,
        memo=f"Airtm payin {payin.id}",
        metadata={"topup_id": topup.public_id, "payin_id": payin.id},
    )


def topup_sync(*, topup_id: int) -> TopUp:
    """Read the payin from Airtm and apply it (refresh, webhook, callback and janitor use it).

    Raises:
        ProviderError: Airtm could not be read; nothing changed.
    """
    topup = TopUp.objects.select_related("user").get(pk=topup_id)
    if topup.is_final:
        return topup
    client = airtm_client()
    if topup.airtm_payin_id:
        payin = client.get_payin(topup.airtm_payin_id)
    else:
        found = client.find_payin(topup.code)
        if found is None:  # never created (or not yet): creating it is the submit's job
            return topup_submit(topup_id=topup_id)
        payin = found
    return topup_apply(topup_id=topup_id, payin=payin)


# --- Cancel and expire -------------------------------------------------------------------------


def topup_cancel(*, topup: TopUp, by: str = "user") -> TopUp:
    """Cancel a top-up nobody has paid yet, at Airtm first.

    Raises:
        InvalidStateError: the top-up is past waiting for the payer (it may have just been
            paid: the answer names the state it is in now).
        ProviderBusyError: another request is talking to Airtm about it.
        ProviderError: Airtm could not be reached; nothing changed.
    """
    _check_cancelable(topup)
    with leased(TopUp, topup.pk, topup.public_id):
        topup = TopUp.objects.select_related("user").get(pk=topup.pk)
        _check_cancelable(topup)
        client = airtm_client()
        payin_id = topup.airtm_payin_id
        if not payin_id:
            found = client.find_payin(topup.code)
            payin_id = found.id if found is not None else ""
        if payin_id:
            try:
                payin = client.cancel_payin(payin_id)
            except ProviderRejectedError:
                # Completed meanwhile (415032): apply what it is, then refuse the cancel.
                topup = topup_apply(topup_id=topup.pk, payin=client.get_payin(payin_id))
                _check_cancelable(topup)
                raise
            return topup_apply(topup_id=topup.pk, payin=payin, canceled_by=by)
        return _cancel_locally(topup.pk, by)


def _check_cancelable(topup: TopUp) -> None:
    if topup.status not in TopUp.WAITING:
        raise InvalidStateError(
            f"A top-up in {topup.status} cannot be canceled.",
            current_state=topup.status,
            allowed_states=sorted(TopUp.WAITING),
        )


def _cancel_locally(topup_id: int, by: str) -> TopUp:
    with transaction.atomic():
        topup = locked(TopUp, topup_id)
        _check_cancelable(topup)
        before = topup.status
        topup.cancel(by=by)
        topup.save()
        audit_transition(topup, before=before, reason=f"canceled by {by}")
        _publish(topup, previous=before)
        return topup


def _cancel_at_airtm(topup: TopUp) -> None:
    try:
        airtm_client().cancel_payin(topup.airtm_payin_id)
    except ProviderError:
        logger.warning("Could not cancel stray payin %s", topup.airtm_payin_id, exc_info=True)


def topup_expire(*, topup: TopUp) -> TopUp:
    """Cancel an unpaid top-up whose time is up (janitor), at Airtm first."""
    try:
        return topup_cancel(topup=topup, by="timeout")
    except InvalidStateError:
        return TopUp.objects.get(pk=topup.pk)


# --- Events ------------------------------------------------------------------------------------


def _publish(topup: TopUp, *, previous: str) -> None:
    common: dict[str, Any] = {
        "marketplace_id": topup.marketplace_id,
        "aggregate_id": topup.public_id,
        "user_ids": (topup.user.public_id,),
        "user_id": topup.user.public_id,
        "amount": topup.money,
        "status": topup.status,
        "previous_status": previous,
        "confirmation_uri": topup.confirmation_uri,
    }
    if topup.status == TopUp.Status.SUCCEEDED:
        credited = Money(Decimal(topup.net_amount or topup.amount), topup.currency)
        publish(TopUpSucceeded(**common, credited=credited))
    elif topup.status == TopUp.Status.CANCELED:
        publish(TOPUP_EVENTS[topup.status](**common, canceled_by=topup.canceled_by))  # type: ignore[call-arg]
    else:
        publish(TOPUP_EVENTS[topup.status](**common, reason=topup.failure_reason))
