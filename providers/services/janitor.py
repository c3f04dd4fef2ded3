"""The janitor: converges top-ups and withdrawals stuck in non-final states by asking Airtm.

A dropped webhook, a crashed worker, a timeout whose outcome we never learned: each leaves
an object waiting. Every minute (Celery beat) the janitor re-reads what has been quiet for
a while and applies it through the same services the webhook uses, so it can only repeat
facts that are already applied (ledger references and forward-only states make that
harmless). Long-waiting objects are polled less often: at most every tenth of their age.

Objects it cannot converge are stuck objects for finance: after each sweep, every top-up or
withdrawal still not final PROVIDER_STUCK_AFTER_SECONDS after it was made (top-ups waiting for
the payer excepted: they expire), or failing to be read from Airtm PROVIDER_ATTENTION_ATTEMPTS
times, has an open reconciliation case; cases of objects that are no longer stuck are cleared.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from ledger.integrity import Finding
from ledger.models import ReconciliationCase
from ledger.reconciliation import cases_sync
from providers.clients.errors import ProviderError
from providers.models import TopUp, Withdrawal
from providers.services.common import flow_kind, note_provider_problem
from providers.services.topups import topup_expire, topup_sync
from providers.services.withdrawals import withdrawal_sync

logger = logging.getLogger(__name__)

M = TypeVar("M", TopUp, Withdrawal)


@dataclass
class JanitorReport:
    checked: int = 0
    changed: int = 0
    errors: int = 0
    stuck: int = 0


def provider_janitor(*, now: datetime | None = None, limit: int = 200) -> JanitorReport:
    now = now or timezone.now()
    report = JanitorReport()
    stale = now - timedelta(seconds=settings.PROVIDER_JANITOR_STALE_SECONDS)
    topups = TopUp.objects.exclude(status__in=TopUp.FINAL).filter(updated_at__lt=stale)
    for topup in _due(topups, now, limit):
        _converge(report, topup, _topup_step(topup, now))
    withdrawals = Withdrawal.objects.filter(status__in=Withdrawal.IN_FLIGHT, updated_at__lt=stale)
    for withdrawal in _due(withdrawals, now, limit):
        _converge(report, withdrawal, partial(withdrawal_sync, withdrawal_id=withdrawal.pk))
    report.stuck = flag_stuck(now=now)
    if report.checked:
        logger.info(
            "provider janitor: %s checked, %s changed, %s errors, %s stuck",
            report.checked,
            report.changed,
            report.errors,
            report.stuck,
        )
    return report


def flag_stuck(*, now: datetime) -> int:
    """Open (or count) a case per stuck top-up or withdrawal, clear the rest; returns how many
    are stuck."""
    too_old = Q(created_at__lt=now - timedelta(seconds=settings.PROVIDER_STUCK_AFTER_SECONDS))
    failing = Q(sync_attempts__gte=settings.PROVIDER_ATTENTION_ATTEMPTS) & ~Q(last_error="")
    topups = TopUp.objects.exclude(status__in=TopUp.FINAL).filter(
        (too_old & ~Q(status__in=TopUp.WAITING)) | failing
    )
    withdrawals = Withdrawal.objects.exclude(status__in=Withdrawal.FINAL).filter(too_old | failing)
    findings = [_stuck(obj, now) for obj in topups] + [_stuck(obj, now) for obj in withdrawals]
    cases_sync(
        source="provider_janitor",
        findings={ReconciliationCase.Kind.STUCK: findings},
        object_types=("topup", "withdrawal"),
    )
    return len(findings)


def _stuck(obj: TopUp | Withdrawal, now: datetime) -> Finding:
    kind = flow_kind(obj)
    hours = int((now - obj.created_at).total_seconds() // 3600)
    summary = f"{kind} {obj.public_id} is still {obj.status} after {hours} h"
    if obj.last_error:
        summary += f"; Airtm could not be read ({obj.sync_attempts} tries): {obj.last_error}"
    return Finding(
        kind=ReconciliationCase.Kind.STUCK,
        key=f"stuck:{kind}:{obj.public_id}",
        summary=summary,
        marketplace_id=obj.marketplace_id,
        object_type=kind,
        object_id=obj.public_id,
        details={
            "status": obj.status,
            "airtm_status": obj.airtm_status,
            "created_at": obj.created_at.isoformat(),
            "sync_attempts": obj.sync_attempts,
            "last_error": obj.last_error,
        },
    )


def _due(queryset: QuerySet[M], now: datetime, limit: int) -> list[M]:
    rows = list(queryset.select_related("user").order_by("updated_at")[: limit * 5])
    due = [row for row in rows if now - row.updated_at >= (now - row.created_at) / 10]
    return due[:limit]


def _topup_step(topup: TopUp, now: datetime) -> Callable[[], TopUp]:
    expired = topup.expires_at is not None and topup.expires_at <= now
    if topup.status in TopUp.WAITING and expired:
        return partial(topup_expire, topup=topup)
    return partial(topup_sync, topup_id=topup.pk)


def _converge(report: JanitorReport, obj: M, step: Callable[[], M]) -> None:
    report.checked += 1
    before = obj.status
    try:
        after = step()
    except ProviderError as exc:
        report.errors += 1
        note_provider_problem(type(obj), obj.pk, f"{exc.code}: {exc.message}")
        return
    except Exception:  # one bad object must not stop the sweep
        report.errors += 1
        logger.exception("provider janitor failed on %s", obj.public_id)
        return
    if after.status != before:
        report.changed += 1
