"""Reads of outbound webhook deliveries, for the back-office."""

from django.db.models import QuerySet

from webhooks.models import WebhookDelivery


def deliveries_of_events(*, event_ids: list[int]) -> QuerySet[WebhookDelivery]:
    """The deliveries of these events (outbox rows), oldest first, with their endpoints."""
    return (
        WebhookDelivery.objects.filter(event_id__in=event_ids)
        .select_related("endpoint")
        .order_by("id")
    )
