"""Back-office views of the platform data. Records of what happened are read-only; staff
change things only through actions and forms that call services (audited, attributed to
the staff user with `acting_as(staff_actor(request))`)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from orchestrator.context import Actor, acting_as
from orchestrator.errors import DomainError
from orchestrator.models import ApiKey, AuditLog, Event, Marketplace, MarketplaceUser, Scope
from orchestrator.services import (
    api_key_create,
    api_key_revoke,
    marketplace_create,
    marketplace_update,
)


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows written only by services: viewable, never edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def object_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """What an object's page shows beyond its fields (for its template); override."""
        return {}

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if obj is not None and self.has_view_permission(request, obj):
            context.update(self.object_context(request, obj))
        return super().change_view(request, object_id, form_url, context)


def admin_link(request: HttpRequest, label: str, pk: object) -> str:
    """The admin page of row `pk` of model `label` ("app_label.model"), or "" when the user
    may not view it (or it has no admin page)."""
    app_label, model_name = label.split(".")
    if not request.user.has_perm(f"{app_label}.view_{model_name}"):
        return ""
    try:
        return reverse(f"admin:{app_label}_{model_name}_change", args=[pk])
    except NoReverseMatch:
        return ""


def staff_actor(request: HttpRequest) -> Actor:
    return Actor(
        kind="staff",
        id=request.user.get_username(),
        request_id=getattr(request, "request_id", ""),
        ip=request.META.get("REMOTE_ADDR", ""),
    )


@admin.register(Marketplace)
class MarketplaceAdmin(admin.ModelAdmin[Marketplace]):
    """Marketplaces are created and changed through orchestrator.services (audited)."""

    list_display = ("name", "slug", "public_id", "platform_fee_bps", "is_active", "created_at")
    readonly_fields = ("public_id", "created_at")
    search_fields = ("name", "slug", "public_id")
    fields = ("name", "slug", "public_id", "platform_fee_bps", "is_active", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "slug") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Marketplace, form: Any, change: bool) -> None:
        with acting_as(staff_actor(request)):
            if change:
                marketplace_update(
                    marketplace=obj,
                    name=obj.name,
                    platform_fee_bps=obj.platform_fee_bps,
                    is_active=obj.is_active,
                )
                return
            created = marketplace_create(
                name=obj.name, slug=obj.slug, platform_fee_bps=obj.platform_fee_bps
            )
            if not obj.is_active:
                created = marketplace_update(marketplace=created, is_active=False)
        obj.pk, obj.public_id, obj.created_at = created.pk, created.public_id, created.created_at

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApiKeyCreateForm(forms.Form):
    marketplace = forms.ModelChoiceField(queryset=Marketplace.objects.order_by("name"))
    name = forms.CharField(max_length=200)
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    environment = forms.ChoiceField(choices=[("test", "Test"), ("live", "Live")])
    expires_at = forms.DateTimeField(
        required=False, help_text="Optional, e.g. 2030-01-31 23:59 (UTC)."
    )


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """API keys: created here through orchestrator.services (the secret is shown once, on
    the page that answers the creation, and never stored), revoked by an action."""

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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orchestrator.add_apikey")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orchestrator.revoke_apikey")

    @admin.action(description="Revoke the selected API keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        with acting_as(staff_actor(request)):
            for key in queryset:
                api_key_revoke(key=key, reason="revoked in admin")
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyCreateForm(request.POST if request.method == "POST" else None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Create an API key",
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                with acting_as(staff_actor(request)):
                    key, raw = api_key_create(
                        marketplace=data["marketplace"],
                        name=data["name"],
                        scopes=list(data["scopes"]),
                        environment=data["environment"],
                        expires_at=data["expires_at"],
                    )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                context.update(title="API key created", key=key, raw_key=raw)
                response = TemplateResponse(
                    request, "admin/orchestrator/apikey/created.html", context
                )
                response["Cache-Control"] = "no-store"  # the secret must not be cached
                return response
        return TemplateResponse(request, "admin/orchestrator/apikey/add.html", context)


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
    """Who changed what: read-only for everyone (the database refuses edits anyway)."""

    list_display = (
        "created_at",
        "action",
        "object_type",
        "object_id",
        "actor_kind",
        "actor_id",
        "reason",
        "request_id",
        "marketplace",
    )
    list_filter = ("action", "object_type", "actor_kind", "marketplace")
    search_fields = ("object_id", "actor_id", "request_id", "reason")
    date_hierarchy = "created_at"
    list_select_related = ("marketplace",)
