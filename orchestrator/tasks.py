"""Platform housekeeping tasks."""

from celery import shared_task

from orchestrator.api.idempotency import idempotency_cleanup as cleanup


@shared_task
def idempotency_cleanup() -> int:
    return cleanup()
