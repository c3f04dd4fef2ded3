"""Back-office views of the platform data. Records of what happened are read-only."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestrator.context import Actor, acting_as
from orchestrator.models import ApiKey, AuditLog, Event, Marketplace, MarketplaceUser
from orchestrator.services import api_key_revoke


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows written only by services: viewable, never edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def staff_actor(request: HttpRequest) -> Actor:
    return Actor(
        kind="staff",
        id=request.user.get_username(),
        request_id=getattr(request, "request_id", ""),
        ip=request.META.get("REMOTE_ADDR", ""),
    )


@admin.register(Marketplace)
class MarketplaceAdmin(admin.ModelAdmin[Marketplace]):
    list_display = ("name", "slug", "public_id", "platform_fee_bps", "is_active", "created_at")
    readonly_fields = ("public_id", "created_at")
    search_fields = ("name", "slug", "public_id")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "public_id",
        "marketplace",
        "environment",
        "scopes",
        "hint",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("environment", "marketplace")
    search_fields = ("name", "public_id")
    exclude = ("key_hash",)
    actions = ["revoke"]

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        with acting_as(staff_actor(request)):
            for key in queryset:
                api_key_revoke(key=key, reason="revoked in admin")
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MarketplaceUser)
class MarketplaceUserAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "external_user_id",
        "email",
        "type",
        "status",
        "marketplace",
        "created_at",
    )
    list_filter = ("type", "status", "marketplace")
    search_fields = ("public_id", "external_user_id", "email")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "type",
        "aggregate_type",
        "aggregate_id",
        "marketplace",
        "created_at",
    )
    list_filter = ("type", "marketplace")
    search_fields = ("public_id", "aggregate_id", "request_id")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "action",
        "object_type",
        "object_id",
        "actor_kind",
        "actor_id",
        "request_id",
        "marketplace",
    )
    list_filter = ("action", "actor_kind", "marketplace")
    search_fields = ("object_id", "actor_id", "request_id")
