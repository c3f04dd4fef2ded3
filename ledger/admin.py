"""Back-office views of the ledger. Records are read-only: money changes only through
services, from actions and forms that call them as the staff member (ledger.adjustments,
ledger.reconciliation). Ledger entries can be exported as CSV for a date range."""

import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from ledger.adjustments import adjustment_approve, adjustment_reject, adjustment_request
from ledger.forms import AdjustmentRequestForm, EntryExportForm
from ledger.models import (
    Account,
    AccountShard,
    Adjustment,
    ChainHead,
    Hold,
    JournalEntry,
    Posting,
    ReconciliationCase,
)
from ledger.reconciliation import case_assign, case_resolve
from ledger.selectors import entry_postings
from orchestrator.admin import ConfirmForm, ReadOnlyAdmin, confirmed_action, staff_actor
from orchestrator.backoffice import csv_download, require_perm, staff_user
from orchestrator.context import acting_as
from orchestrator.errors import DomainError


class PostingInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Posting
    fields = ("account", "amount", "currency")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "kind",
        "code",
        "user_public_id",
        "currency",
        "balance",
        "marketplace",
    )
    list_filter = ("kind", "currency", "marketplace")
    search_fields = ("public_id", "code", "user_public_id")


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "kind", "reference", "marketplace", "sequence", "created_at")
    list_filter = ("kind", "marketplace")
    search_fields = ("public_id", "reference")
    inlines = [PostingInline]
    change_list_template = "admin/ledger/journalentry/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        export = self.admin_site.admin_view(self.export_view)
        return [
            path("export/", export, name="ledger_journalentry_export"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        can_export = request.user.has_perm("ledger.export_entries")
        return super().changelist_view(request, {**(extra_context or {}), "can_export": can_export})

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """A date-range form; submitted, every posting of the entries made in the range."""
        require_perm(request, "ledger.export_entries")
        form = EntryExportForm(request.GET) if "start" in request.GET else EntryExportForm()
        if not form.is_bound or not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Export ledger entries",
                "opts": self.model._meta,
                "form": form,
            }
            return TemplateResponse(request, "admin/ledger/journalentry/export.html", context)
        start, end = form.bounds()
        marketplace = form.cleaned_data["marketplace"]
        postings = entry_postings(
            start=start, end=end, marketplace_id=marketplace.pk if marketplace else None
        )
        rows = (
            (
                p.entry.created_at.isoformat(),
                p.entry.public_id,
                p.entry.marketplace.public_id,
                p.entry.sequence,
                p.entry.reference,
                p.entry.kind,
                p.account.public_id,
                p.account.user_public_id or p.account.code,
                p.account.kind,
                p.currency,
                p.money.text(),
                p.entry.memo,
                p.entry.hash,
            )
            for p in postings.iterator(chunk_size=2000)
        )
        name = f"ledger-entries-{form.cleaned_data['start']}-{form.cleaned_data['end']}.csv"
        return csv_download(name, ENTRY_CSV_HEADER, rows)


ENTRY_CSV_HEADER = (
    "created_at",
    "entry_id",
    "marketplace_id",
    "sequence",
    "reference",
    "kind",
    "account_id",
    "account_owner",
    "account_kind",
    "currency",
    "amount",
    "memo",
    "entry_hash",
)


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ("entry", "account", "amount", "currency")
    search_fields = ("entry__public_id", "account__public_id")
    list_select_related = ("entry", "account")


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "reference", "user", "amount", "currency", "status", "expires_at")
    list_filter = ("status", "currency", "marketplace")
    search_fields = ("public_id", "reference")


admin.site.register(AccountShard, ReadOnlyAdmin)
admin.site.register(ChainHead, ReadOnlyAdmin)


# --- Reconciliation ----------------------------------------------------------------------------

# Where the admin lists each kind of object a case can be about (searched by its public id).
CASE_OBJECT_PAGES = {
    "topup": "admin:providers_topup_changelist",
    "withdrawal": "admin:providers_withdrawal_changelist",
    "escrow": "admin:escrow_escrow_changelist",
    "account": "admin:ledger_account_changelist",
    "ledger_entry": "admin:ledger_journalentry_changelist",
}


@admin.register(ReconciliationCase)
class ReconciliationCaseAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "kind",
        "status",
        "summary",
        "object_link",
        "occurrences",
        "last_seen_at",
        "assigned_to",
        "marketplace",
    )
    list_filter = ("status", "kind", "source", "resolution", "assigned_to", "marketplace")
    search_fields = ("public_id", "key", "object_id", "summary")
    date_hierarchy = "opened_at"
    ordering = ("-last_seen_at",)
    readonly_fields = (
        "public_id",
        "kind",
        "status",
        "summary",
        "object_link",
        "source",
        "key",
        "occurrences",
        "opened_at",
        "last_seen_at",
        "assigned_to",
        "details_text",
        "resolution",
        "resolution_note",
        "resolved_by",
        "resolved_at",
        "adjustments_link",
        "marketplace",
    )
    fields = readonly_fields
    actions = ["assign_to_me", "resolve_fixed", "resolve_no_action"]

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.resolve_reconciliationcase")

    @admin.display(description="About")
    def object_link(self, case: ReconciliationCase) -> str:
        page = CASE_OBJECT_PAGES.get(case.object_type)
        if not page:
            return case.object_id
        url = f"{reverse(page)}?q={case.object_id}"
        return format_html('{} <a href="{}">{}</a>', case.object_type, url, case.object_id)

    @admin.display(description="Details")
    def details_text(self, case: ReconciliationCase) -> str:
        return format_html("<pre>{}</pre>", json.dumps(case.details, indent=2, sort_keys=True))

    @admin.display(description="Adjustments")
    def adjustments_link(self, case: ReconciliationCase) -> str:
        listed = reverse("admin:ledger_adjustment_changelist") + f"?case__id__exact={case.pk}"
        add = reverse("admin:ledger_adjustment_add") + f"?case={case.public_id}"
        return format_html(
            '<a href="{}">{} made for this case</a> · <a href="{}">request one</a>',
            listed,
            case.adjustments.count(),
            add,
        )

    @admin.action(description="Assign to me", permissions=["resolve"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[ReconciliationCase]) -> None:
        me = request.user.get_username()
        with acting_as(staff_actor(request)):
            for case in queryset:
                try:
                    case_assign(case=case, assigned_to=me)
                except DomainError as exc:
                    self.message_user(request, f"{case}: {exc.message}", messages.ERROR)

    @admin.action(description="Resolve: fixed (with a note)", permissions=["resolve"])
    def resolve_fixed(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationCase]
    ) -> HttpResponse | None:
        return self._resolve(request, queryset, ReconciliationCase.Resolution.FIXED)

    @admin.action(description="Resolve: no action needed (with a note)", permissions=["resolve"])
    def resolve_no_action(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationCase]
    ) -> HttpResponse | None:
        return self._resolve(request, queryset, ReconciliationCase.Resolution.NO_ACTION)

    def _resolve(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationCase], resolution: str
    ) -> HttpResponse | None:
        me = request.user.get_username()
        return confirmed_action(
            self,
            request,
            queryset,
            title=f"Resolve as {ReconciliationCase.Resolution(resolution).label.lower()}",
            apply=lambda case, data: case_resolve(
                case=case, resolution=resolution, note=data["reason"], resolved_by=me
            ),
        )


@admin.register(Adjustment)
class AdjustmentAdmin(ReadOnlyAdmin):
    """Adjustments are requested with a form that calls the service; approved or rejected
    with actions. Above the threshold, the requester cannot approve their own."""

    list_display = (
        "public_id",
        "user",
        "direction",
        "amount",
        "currency",
        "status",
        "requested_by",
        "approved_by",
        "created_at",
    )
    list_filter = ("status", "direction", "currency", "marketplace")
    search_fields = ("public_id", "user__public_id", "reason")
    list_select_related = ("user", "requested_by", "approved_by")
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.add_adjustment")

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.approve_adjustment")

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Request an adjustment: posted now up to the threshold, else waits for approval."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = AdjustmentRequestForm(request.POST)
            if form.is_valid():
                try:
                    with acting_as(staff_actor(request)):
                        adjustment = adjustment_request(
                            user=form.cleaned_data["user"],
                            amount=form.cleaned_data["money"],
                            direction=form.cleaned_data["direction"],
                            reason=form.cleaned_data["reason"],
                            requested_by=staff_user(request),
                            case=form.cleaned_data["case"],
                        )
                except DomainError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.message_user(request, _requested_message(adjustment), messages.SUCCESS)
                    url = reverse("admin:ledger_adjustment_change", args=[adjustment.pk])
                    return HttpResponseRedirect(url)
        else:
            form = AdjustmentRequestForm(initial=request.GET.dict())
        context = {
            **self.admin_site.each_context(request),
            "title": "Request an adjustment",
            "opts": self.model._meta,
            "form": form,
            "threshold": settings.ADJUSTMENT_APPROVAL_THRESHOLD,
        }
        return TemplateResponse(request, "admin/ledger/adjustment/request.html", context)

    @admin.action(description="Approve and post the selected adjustments", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Adjustment]) -> HttpResponse | None:
        approver = staff_user(request)
        return confirmed_action(
            self,
            request,
            queryset,
            title="Approve and post",
            form_class=ConfirmForm,
            apply=lambda adjustment, data: adjustment_approve(
                adjustment=adjustment, approved_by=approver
            ),
        )

    @admin.action(description="Reject the selected adjustments", permissions=["approve"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Adjustment]) -> HttpResponse | None:
        rejecter = staff_user(request)
        return confirmed_action(
            self,
            request,
            queryset,
            title="Reject",
            apply=lambda adjustment, data: adjustment_reject(
                adjustment=adjustment, rejected_by=rejecter, reason=data["reason"]
            ),
        )


def _requested_message(adjustment: Adjustment) -> str:
    if adjustment.status == Adjustment.Status.POSTED:
        return f"{adjustment.public_id} is posted."
    return (
        f"{adjustment.public_id} is above the approval threshold: it waits for a second staff "
        "member to approve it."
    )
