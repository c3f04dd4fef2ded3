"""Signal receivers: outbound deliveries are written in the transaction of each event."""

from typing import Any

from django.dispatch import receiver

from orchestrator.events import DomainEvent, domain_event
from orchestrator.models import Event
from webhooks.outbound import deliveries_record


@receiver(domain_event, dispatch_uid="webhooks.record_deliveries")
def record_deliveries(
    sender: type[DomainEvent], *, event: DomainEvent, record: Event, **kwargs: Any
) -> None:
    deliveries_record(record)
