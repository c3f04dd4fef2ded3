"""Webhook tasks: inbound processing and outbound delivery (thin wrappers)."""

from typing import Any

from celery import Task, shared_task

from providers.clients.errors import ProviderError
from webhooks import outbound
from webhooks.inbound import inbound_webhook_process as process
from webhooks.inbound import inbound_webhook_sweep as sweep

# Seconds before each retry while the provider cannot be read: about 3 hours in all; the
# janitor converges the object anyway.
RETRY_DELAYS = (5, 30, 120, 600, 1800, 3600, 3600)


@shared_task(bind=True, max_retries=len(RETRY_DELAYS), acks_late=True)
def inbound_webhook_process(self: Task[Any, Any], *, webhook_id: int) -> str:
    try:
        return process(webhook_id=webhook_id).status
    except ProviderError as exc:
        if self.request.retries < len(RETRY_DELAYS):
            raise self.retry(exc=exc, countdown=RETRY_DELAYS[self.request.retries]) from exc
        raise


@shared_task
def inbound_webhook_sweep() -> int:
    return sweep()


@shared_task(acks_late=True)
def delivery_attempt(*, delivery_id: int, token: str) -> str:
    """One attempt of an outbound delivery; retries are scheduled in the delivery row."""
    return outbound.delivery_attempt(delivery_id=delivery_id, token=token)


@shared_task
def delivery_sweep() -> int:
    """Queue the outbound deliveries that are due and owned by no task."""
    return outbound.deliveries_sweep()


@shared_task(acks_late=True)
def delivery_dispatch(*, event_id: int) -> int:
    """Send the deliveries of a just-committed event (written by the outbox trigger)."""
    return outbound.deliveries_dispatch(event_id=event_id)
