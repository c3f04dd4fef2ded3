"""Back-office views of the platform data. Records of what happened are read-only; staff
change things only through actions and forms that call services (`confirmed_action`),
audited and attributed to the staff user with `acting_as(staff_actor(request))`."""

from collections.abc import Callable
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse

from ledger.selectors import statement_lines, statement_openings, user_balances
from orchestrator.backoffice import DateRangeForm, csv_download, require_perm
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


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Recorded in the audit log with your name.",
    )


class ConfirmForm(forms.Form):
    pass


def confirmed_action(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    apply: Callable[[Any, dict[str, Any]], object],
    form_class: type[forms.Form] = ReasonForm,
) -> HttpResponse | None:
    """An admin action that first shows what it will do (and asks for a reason), then calls
    `apply(obj, cleaned_data)` for each selected row as the staff member.

    A DomainError for one row is shown and the others still run. Returns the confirmation
    page, or None to go back to the list.
    """
    if "apply" in request.POST:
        form = form_class(request.POST)
        if form.is_valid():
            _apply_each(modeladmin, request, queryset, apply, form.cleaned_data)
            return None
    else:
        form = form_class()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "objects": list(queryset),
        "form": form,
        "action": request.POST.get("action", ""),
        "selected": request.POST.getlist("_selected_action"),
    }
    return TemplateResponse(request, "admin/backoffice/confirm_action.html", context)


def _apply_each(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: QuerySet[Any],
    apply: Callable[[Model, dict[str, Any]], object],
    data: dict[str, Any],
) -> None:
    done = 0
    with acting_as(staff_actor(request)):
        for obj in queryset:
            try:
                apply(obj, data)
            except DomainError as exc:
                modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
            else:
                done += 1
    if done:
        modeladmin.message_user(request, f"Done for {done} of {len(queryset)}.", messages.SUCCESS)


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
    """The user page: who they are, their balances, and their statement for a date range,
    downloadable as CSV."""

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
    change_form_template = "admin/orchestrator/marketplaceuser/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        csv_view = self.admin_site.admin_view(self.statement_csv)
        return [
            path(
                "<path:object_id>/statement.csv",
                csv_view,
                name="orchestrator_marketplaceuser_statement_csv",
            ),
            *super().get_urls(),
        ]

    def object_context(self, request: HttpRequest, obj: MarketplaceUser) -> dict[str, Any]:
        return _statement_page(request, obj)

    def statement_csv(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        require_perm(request, "ledger.export_statement")
        user = self.get_object(request, unquote(object_id))
        if user is None or not self.has_view_permission(request, user):
            raise Http404("No such user.")
        form = DateRangeForm.from_query(request)
        if not form.is_valid():
            return HttpResponseBadRequest(form.errors.as_text())
        start, end = form.bounds()
        lines = statement_lines(user=user, start=start, end=end)
        rows = (
            (
                line.at.isoformat(),
                line.entry_id,
                line.kind,
                line.reference,
                line.account,
                line.amount.currency,
                line.amount.text(),
                line.balance_after.text(),
                line.memo,
            )
            for line in lines
        )
        name = f"statement-{user.public_id}-{form.cleaned_data['start']}-{form.cleaned_data['end']}"
        return csv_download(f"{name}.csv", STATEMENT_CSV_HEADER, rows)


STATEMENT_CSV_HEADER = (
    "created_at",
    "entry_id",
    "kind",
    "reference",
    "account",
    "currency",
    "amount",
    "balance_after",
    "memo",
)
STATEMENT_PAGE_LINES = 200  # shown on the page; the CSV has them all


def _statement_page(request: HttpRequest, user: MarketplaceUser) -> dict[str, Any]:
    """What the user page shows of the ledger, as far as the staff member may read it."""
    context: dict[str, Any] = {}
    if request.user.has_perm("ledger.view_account"):
        context["balances"] = user_balances(user=user)
    if not request.user.has_perm("ledger.view_posting"):
        return context
    form = DateRangeForm.from_query(request)
    context["statement_form"] = form
    if form.is_valid():
        start, end = form.bounds()
        lines = list(
            islice(statement_lines(user=user, start=start, end=end), STATEMENT_PAGE_LINES + 1)
        )
        context["statement"] = {
            "openings": sorted(statement_openings(user=user, before=start).items()),
            "lines": lines[:STATEMENT_PAGE_LINES],
            "truncated": len(lines) > STATEMENT_PAGE_LINES,
            "query": urlencode(
                {"start": form.cleaned_data["start"], "end": form.cleaned_data["end"]}
            ),
        }
        if request.user.has_perm("ledger.export_statement"):
            context["statement_csv_url"] = reverse(
                "admin:orchestrator_marketplaceuser_statement_csv", args=[user.pk]
            )
    return context


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
