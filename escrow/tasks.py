"""Escrow tasks: thin wrappers that call escrow.services."""

from celery import shared_task

from escrow.services.janitor import escrow_janitor as janitor
from escrow.services.steps import escrow_advance


@shared_task(acks_late=True)
def escrow_advance_task(*, escrow_id: int, retry_of: int | None = None) -> str:
    return str(escrow_advance(escrow_id=escrow_id, retry_of=retry_of).status)


@shared_task
def escrow_janitor() -> dict[str, int]:
    report = janitor()
    return {"checked": report.checked, "advanced": report.advanced, "attention": report.attention}
