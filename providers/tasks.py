"""Provider tasks: thin wrappers that call providers.services."""

from celery import shared_task

from providers.services.janitor import provider_janitor as janitor
from providers.services.topups import topup_submit
from providers.services.withdrawals import withdrawal_submit


@shared_task(acks_late=True)
def topup_submit_task(*, topup_id: int) -> str:
    return str(topup_submit(topup_id=topup_id).status)


@shared_task(acks_late=True)
def withdrawal_submit_task(*, withdrawal_id: int) -> str:
    return str(withdrawal_submit(withdrawal_id=withdrawal_id).status)


@shared_task
def provider_janitor() -> dict[str, int]:
    report = janitor()
    return {
        "checked": report.checked,
        "changed": report.changed,
        "errors": report.errors,
        "stuck": report.stuck,
    }
