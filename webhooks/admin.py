"""Back-office views of webhooks: inbound provider messages with their verification result
(the verified ones stored and processed, the refused ones recorded), and outbound deliveries
with their attempts and a replay action (webhooks.outbound.deliveries_replay)."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from orchestrator.admin import ReadOnlyAdmin, staff_actor
from orchestrator.context import acting_as
from webhooks.models import (
    InboundRejection,
    InboundWebhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from webhooks.outbound import deliveries_replay


@admin.register(InboundWebhook)
class InboundWebhookAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "provider",
        "event_type",
        "object_id",
        "verification",
        "status",
        "deliveries",
        "attempts",
        "result",
    )
    list_filter = ("provider", "status", "event_type")
    search_fields = ("message_id", "object_id")

    @admin.display(description="Verification")
    def verification(self, obj: InboundWebhook) -> str:
        # Only messages whose signature verified are stored; refusals are InboundRejections.
        return "signature verified"


@admin.register(InboundRejection)
class InboundRejectionAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "provider",
        "verification",
        "message_id",
        "remote_addr",
        "body_size",
    )
    list_filter = ("provider", "code")
    search_fields = ("message_id", "body_sha256", "remote_addr")
    date_hierarchy = "received_at"

    @admin.display(description="Verification", ordering="code")
    def verification(self, obj: InboundRejection) -> str:
        return f"refused: {obj.reason}"


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
    change_form_template = "admin/webhooks/webhookdelivery/change_form.html"

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.replay_delivery")

    @admin.action(description="Replay the selected deliveries", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        with acting_as(staff_actor(request)):
            queued = deliveries_replay(queryset)
        self.message_user(
            request,
            f"{len(queued)} queued again (deliveries of disabled endpoints are left alone).",
            messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(require_POST(self.replay_view)),
                name="webhooks_webhookdelivery_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The delivery page's Replay button: the replay action, for this delivery."""
        if not self.has_replay_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(WebhookDelivery, pk=object_id)
        self.replay(request, WebhookDelivery.objects.filter(pk=delivery.pk))
        return HttpResponseRedirect(
            reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
        )

    def object_context(self, request: HttpRequest, obj: WebhookDelivery) -> dict[str, Any]:
        return {"can_replay": self.has_replay_permission(request)}
