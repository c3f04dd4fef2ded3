"""The janitor: converges top-ups and withdrawals stuck in non-final states by asking Airtm.

A dropped webhook, a crashed worker, a timeout whose outcome we never learned: each leaves
an object waiting. Every minute (Celery beat) the janitor re-reads what has been quiet for
a while and applies it through the same services the webhook uses, so it can only repeat
facts that are already applied (ledger references and forward-only states make that
harmless). Long-waiting objects are polled less often: at most every tenth of their age.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from providers.clients.errors import ProviderError
from providers.models import TopUp, Withdrawal
from providers.services.common import note_provider_problem
from providers.services.topups import topup_expire, topup_sync
from providers.services.withdrawals import withdrawal_sync

logger = logging.getLogger(__name__)

M = TypeVar("M", TopUp, Withdrawal)


@dataclass
class JanitorReport:
    checked: int = 0
    changed: int = 0
    errors: int = 0


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
    if report.checked:
        logger.info(
            "provider janitor: %s checked, %s changed, %s errors",
            report.checked,
            report.changed,
            report.errors,
        )
    return report


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
