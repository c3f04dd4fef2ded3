"""Ledger housekeeping: sealing the hash chain, hold expiry, nightly verification and
reconciliation."""

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

SEAL_PENDING_KEY = "ledger:seal-scheduled"


def schedule_seal() -> None:
    """After a commit that posted entries: get them sealed soon, without a task per entry."""
    if not settings.LEDGER_SEAL_ON_COMMIT:
        return
    if settings.CELERY_TASK_ALWAYS_EAGER:
        ledger_seal_task.delay()  # in-process: seal now
        return
    # At most one pending seal task per debounce window, whatever the commit rate.
    window = settings.LEDGER_SEAL_DEBOUNCE_SECONDS
    if cache.add(SEAL_PENDING_KEY, 1, timeout=window):
        ledger_seal_task.apply_async(countdown=window)


@shared_task
def ledger_seal_task() -> int:
    from ledger.integrity import ledger_seal

    return ledger_seal()


@shared_task
def hold_expiry_sweep() -> int:
    from ledger.services import hold_expire_due

    return hold_expire_due()


@shared_task
def ledger_verify_task() -> bool:
    """Nightly verify_ledger, reading the providers too; problems become reconciliation cases."""
    from ledger.reconciliation import ledger_reconcile

    report = ledger_reconcile(remote=True)
    if report.ok:
        logger.info(
            "ledger verified: %s entries, %s accounts",
            report.verify.entries,
            report.verify.accounts,
        )
    else:
        for problem in report.problems:
            logger.error("ledger verification: %s", problem)
    return report.ok
