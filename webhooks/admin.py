"""Read-only view of inbound provider webhooks, with what processing made of each."""

from django.contrib import admin

from orchestrator.admin import ReadOnlyAdmin
from webhooks.models import InboundWebhook


@admin.register(InboundWebhook)
class InboundWebhookAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "provider",
        "event_type",
        "object_id",
        "status",
        "deliveries",
        "attempts",
        "result",
    )
    list_filter = ("provider", "status", "event_type")
    search_fields = ("message_id", "object_id")
