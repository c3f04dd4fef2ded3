"""Read-only view of inbound provider webhooks, with what processing made of each."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestrator.admin import ReadOnlyAdmin, staff_actor
from orchestrator.context import acting_as
from webhooks.models import InboundWebhook, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.outbound import deliveries_replay


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


class WebhookAttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "status_code", "succeeded", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "marketplace", "url", "is_enabled", "failing_since", "created_at")
    list_filter = ("is_enabled",)
    search_fields = ("public_id", "url")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "event_type",
        "endpoint",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("public_id", "event__public_id", "endpoint__public_id")
    list_select_related = ("endpoint",)
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    @admin.action(description="Replay the selected deliveries")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        with acting_as(staff_actor(request)):
            queued = deliveries_replay(queryset)
        self.message_user(
            request,
            f"{len(queued)} queued again (deliveries of disabled endpoints are left alone).",
            messages.SUCCESS,
        )
