"""Signal receivers of the outbound webhooks.

- Where the database does not write deliveries itself (SQLite; PostgreSQL has the outbox
  trigger of migration 0003), `record_deliveries` writes them in the event's transaction.
- After commit, `dispatch_deliveries` queues a task that sends the new event's deliveries
  at once (the sweeper would find them too, later).
"""

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from orchestrator.events import DomainEvent, domain_event, event_committed
from orchestrator.models import Event
from webhooks.models import WebhookEndpoint
from webhooks.outbound import (
    deliveries_record,
    deliveries_written_by_database,
    endpoint_index_clear,
    marketplace_has_endpoints,
)


def record_deliveries(
    sender: type[DomainEvent], *, event: DomainEvent, record: Event, **kwargs: Any
) -> None:
    deliveries_record(record)


def dispatch_deliveries(sender: type[DomainEvent], *, record: Event, **kwargs: Any) -> None:
    from webhooks.tasks import delivery_dispatch  # webhooks.tasks imports outbound

    if record.marketplace_id is not None and marketplace_has_endpoints(record.marketplace_id):
        delivery_dispatch.delay(event_id=record.pk)


@receiver(post_save, sender=WebhookEndpoint, dispatch_uid="webhooks.endpoint_index")
def _endpoint_saved(sender: type[WebhookEndpoint], **kwargs: Any) -> None:
    endpoint_index_clear()


def connect() -> None:
    """Connect the receivers that fit the database (called from WebhooksConfig.ready)."""
    if deliveries_written_by_database():
        event_committed.connect(dispatch_deliveries, dispatch_uid="webhooks.dispatch_deliveries")
    else:
        domain_event.connect(record_deliveries, dispatch_uid="webhooks.record_deliveries")
