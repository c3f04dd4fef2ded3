"""The escrow janitor: continues chain steps that have waited too long.

A crashed worker, a lost task, a timeout whose outcome we never learned, Trustless Work
down or rate limiting, its indexer lagging: each leaves a ChainStep PENDING. Every minute
(Celery beat) the janitor runs `escrow_advance` for escrows whose pending step has been
quiet for ESCROW_JANITOR_STALE_SECONDS. That reads Trustless Work (the chain itself) and
settles the step's stored envelope before anything new is built, so it can only confirm
what landed or finish what did not; it never moves a state on a stale read. Escrows
retried many times are counted as needing attention (flagged on the escrow), and each such
escrow has an open "stuck object" reconciliation case until the flag is lifted.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from escrow.models import ChainStep, Escrow
from escrow.services.reconciliation import escrow_finding
from escrow.services.steps import escrow_advance
from ledger.models import ReconciliationCase
from ledger.reconciliation import cases_sync

logger = logging.getLogger(__name__)


@dataclass
class JanitorReport:
    checked: int = 0
    advanced: int = 0
    attention: int = 0


def escrow_janitor(*, now: datetime | None = None, limit: int = 100) -> JanitorReport:
    now = now or timezone.now()
    report = JanitorReport()
    stale = now - timedelta(seconds=settings.ESCROW_JANITOR_STALE_SECONDS)
    escrow_ids = list(
        ChainStep.objects.filter(status=ChainStep.Status.PENDING, updated_at__lte=stale)
        .order_by("updated_at")
        .values_list("escrow_id", flat=True)
        .distinct()[: limit * 2]
    )
    for escrow_id in list(dict.fromkeys(escrow_ids))[:limit]:
        report.checked += 1
        before = _pending(escrow_id)
        try:
            escrow = escrow_advance(escrow_id=escrow_id)
        except Exception:  # one bad escrow must not stop the sweep
            logger.exception("escrow janitor failed on escrow %s", escrow_id)
            continue
        if _pending(escrow_id) < before:
            report.advanced += 1
        if escrow.needs_attention:
            report.attention += 1
    flag_stuck()
    if report.checked:
        logger.info(
            "escrow janitor: %s checked, %s advanced, %s need attention",
            report.checked,
            report.advanced,
            report.attention,
        )
    return report


def _pending(escrow_id: int) -> int:
    return ChainStep.objects.filter(escrow_id=escrow_id, status=ChainStep.Status.PENDING).count()


def flag_stuck() -> int:
    """Open (or count) a case per escrow needing attention, clear the others' cases; returns
    how many need attention."""
    escrows = Escrow.objects.filter(needs_attention=True).select_related("order")
    findings = [
        escrow_finding(
            escrow,
            kind=ReconciliationCase.Kind.STUCK,
            key=f"stuck:escrow:{escrow.public_id}",
            summary=(
                f"escrow {escrow.public_id} of order {escrow.order.public_id} is stuck in "
                f"{escrow.status}: {escrow.last_error or 'a chain step keeps failing'}"
            ),
            last_error=escrow.last_error,
        )
        for escrow in escrows
    ]
    cases_sync(
        source="escrow_janitor",
        findings={ReconciliationCase.Kind.STUCK: findings},
        object_types=("escrow",),
    )
    return len(findings)
