"""Shared machinery of the Airtm flows: the client, per-object leases, status bookkeeping.

Every provider operation has three steps (DESIGN.md §5-6): start (a transaction that writes
our intent), call (the provider, outside any transaction, under this object's lease), and
confirm or fail (a transaction that locks the row, moves the state machine, posts the
ledger entry, writes the audit row and publishes the event).
"""

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ledger.integrity import Finding
from ledger.models import ReconciliationCase
from ledger.reconciliation import case_open
from orchestrator.audit import audit_record
from providers.clients.airtm import AirtmClient
from providers.errors import ProviderBusyError
from providers.models import TopUp, Withdrawal, snapshot

logger = logging.getLogger(__name__)

M = TypeVar("M", TopUp, Withdrawal)

# Longer than the slowest client call (bounded retries of 3 s connect + 10 s read).
LEASE_SECONDS = 120


@functools.cache
def _client(base_url: str, api_key: str, checkout_url: str) -> AirtmClient:
    return AirtmClient.from_settings()


def airtm_client() -> AirtmClient:
    """The process's Airtm client (one HTTP session), for the current settings."""
    return _client(settings.AIRTM_BASE_URL, settings.AIRTM_API_KEY, settings.AIRTM_CHECKOUT_URL)


@contextmanager
def lease(model: type[M], pk: int, *, wait: bool = False) -> Iterator[bool]:
    """Hold `model` row `pk`'s provider lease for the block; yields whether it was taken.

    Two processes must not talk to Airtm about one object at once: a cancel that finds no
    payout must not race a submit that is creating it. The lease is a column, not a row
    lock, because the provider call runs outside any transaction; it expires on its own if
    the holder dies. With `wait=False` a busy lease yields False; callers that answer an
    API request raise ProviderBusyError instead (see `leased`).
    """
    now = timezone.now()
    taken = bool(
        model.objects.filter(pk=pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + timedelta(seconds=LEASE_SECONDS))
    )
    try:
        yield taken
    finally:
        if taken:
            model.objects.filter(pk=pk).update(lease_until=None)


@contextmanager
def leased(model: type[M], pk: int, public_id: str) -> Iterator[None]:
    """`lease` for API callers: 409 PROVIDER_OPERATION_IN_PROGRESS when it is busy."""
    with lease(model, pk) as taken:
        if not taken:
            raise ProviderBusyError(
                "Another operation on this object is talking to Airtm; retry shortly.",
                id=public_id,
            )
        yield


def locked(model: type[M], pk: int) -> M:
    """The row, locked for the rest of the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("locked() must run inside a transaction.")
    return model.objects.select_for_update().select_related("user").get(pk=pk)


def flow_kind(obj: TopUp | Withdrawal) -> str:
    """The object type audit rows and reconciliation cases name it by."""
    return "topup" if isinstance(obj, TopUp) else "withdrawal"


def audit_transition(obj: TopUp | Withdrawal, *, before: str, reason: str = "") -> None:
    kind = flow_kind(obj)
    audit_record(
        action=f"{kind}.status_changed",
        object_type=kind,
        object_id=obj.public_id,
        marketplace_id=obj.marketplace_id,
        before={"status": before},
        after=snapshot(obj),
        reason=reason,
    )


def note_provider_problem(model: type[M], pk: int, message: str) -> None:
    """Remember the last provider problem on the object, for the API and the janitor."""
    model.objects.filter(pk=pk).update(
        last_error=message[:500], sync_attempts=F("sync_attempts") + 1, updated_at=timezone.now()
    )


def retry_later(task_name: str, *, attempts: int, **kwargs: int) -> None:
    """Queue another try of a provider call after commit, backing off with `attempts`.

    In-process (eager) mode has no delayed tasks: a retry would run at once, again and
    again while the provider is down, so there the janitor is the retry.
    """
    from orchestrator.celery import app

    if app.conf.task_always_eager:
        return
    countdown = min(600, 10 * 2 ** min(attempts, 6))
    transaction.on_commit(lambda: app.send_task(task_name, kwargs=kwargs, countdown=countdown))


# The final status in which the money moved: the user was credited, or paid out.
_MONEY_MOVED = {TopUp: TopUp.Status.SUCCEEDED, Withdrawal: Withdrawal.Status.COMPLETED}


def status_mismatch(obj: TopUp | Withdrawal, theirs: str | None) -> Finding | None:
    """The problem when we and Airtm have each reached an end and only one of the two moved
    the money: Airtm CONFIRMED the payin of a top-up we canceled (paid, never credited), or
    COMPLETED a payout we returned to the user. `theirs` is what Airtm's status means here."""
    if not obj.is_final or theirs not in obj.FINAL:
        return None
    moved = _MONEY_MOVED[type(obj)]
    if (obj.status == moved) == (theirs == moved):
        return None
    kind = flow_kind(obj)
    return Finding(
        kind=ReconciliationCase.Kind.AIRTM,
        key=f"airtm:{kind}:{obj.public_id}:status",
        summary=f"{kind} {obj.public_id} is {obj.status} here but Airtm says {obj.airtm_status}",
        marketplace_id=obj.marketplace_id,
        object_type=kind,
        object_id=obj.public_id,
        details={"status": obj.status, "airtm_status": obj.airtm_status, "amount": str(obj.amount)},
    )


def note_status_mismatch(obj: TopUp | Withdrawal, theirs: str | None) -> None:
    """Open a reconciliation case (in the caller's transaction) if Airtm's end is not ours."""
    finding = status_mismatch(obj, theirs)
    if finding is not None:
        logger.error("%s: needs reconciliation", finding.summary)
        case_open(finding=finding, source="airtm")
