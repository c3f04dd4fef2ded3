"""Back-office views of orders, escrows, milestones, disputes and chain steps.

Records are read-only: every change goes through escrow.services, with its ledger entry,
audit row and event. Staff act through the dispute queue's actions (assign to me, notes,
the decision form), which call the same services as the API, attributed to the staff user.
The order page shows the whole timeline (escrow.selectors.order_timeline, plus the webhook
deliveries of its events) and links to everything it touches.
"""

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from escrow.models import ChainStep, Dispute, DisputeNote, Escrow, Milestone, Order
from escrow.selectors import TimelineItem, order_timeline
from escrow.services.disputes import (
    ResolutionPreview,
    dispute_assign,
    dispute_note_add,
    dispute_preview,
    dispute_resolve,
)
from ledger.money import Money
from orchestrator.admin import ReadOnlyAdmin, admin_link, staff_actor
from orchestrator.context import acting_as
from orchestrator.errors import DomainError
from webhooks.selectors import deliveries_of_events


class MilestoneInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Milestone
    extra = 0
    can_delete = False
    fields = ("ref", "index", "title", "amount", "status", "completed_at", "approved_at")
    readonly_fields = fields

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


# --- Orders ------------------------------------------------------------------------------------


def _webhook_items(items: list[TimelineItem]) -> list[TimelineItem]:
    """The deliveries to the marketplace's endpoints of the timeline's events."""
    event_ids = [i.source[1] for i in items if i.source and i.source[0] == "orchestrator.event"]
    return [
        TimelineItem(
            delivery.created_at,
            "webhook",
            f"{delivery.event_type} to {delivery.endpoint.url}",
            {
                "delivery": delivery.public_id,
                "status": delivery.status,
                "attempts": delivery.attempt_count,
                "last_status_code": delivery.last_status_code,
                "last_error": delivery.last_error,
            },
            ("webhooks.webhookdelivery", delivery.pk),
        )
        for delivery in deliveries_of_events(event_ids=event_ids)
    ]


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "marketplace",
        "status",
        "outcome",
        "amount",
        "currency",
        "created_at",
    )
    list_filter = ("status", "outcome", "marketplace")
    search_fields = ("public_id", "client_order_ref", "buyer__public_id", "seller__public_id")
    list_select_related = ("marketplace",)
    inlines = [MilestoneInline]
    change_form_template = "admin/escrow/order/change_form.html"

    def object_context(self, request: HttpRequest, obj: Order) -> dict[str, Any]:
        items = order_timeline(order=obj, internal=True)
        items = sorted([*items, *_webhook_items(items)], key=lambda item: item.at)
        return {
            "timeline": [(item, _source_url(request, item), _details(item)) for item in items],
            "links": _order_links(request, obj, Escrow.objects.filter(order=obj).first()),
        }


def _source_url(request: HttpRequest, item: TimelineItem) -> str:
    if item.source is None:
        return ""
    label, pk = item.source
    return admin_link(request, label, pk)


def _details(item: TimelineItem) -> list[tuple[str, str]]:
    """A timeline item's details as short (key, text) pairs; ledger postings one a line."""
    shown: list[tuple[str, str]] = []
    for key, value in item.details.items():
        if value in (None, "", [], {}):
            continue
        if key == "postings" and isinstance(value, list):
            text = "; ".join(f"{p['account']} {p['amount']} {p['currency']}" for p in value)
        elif isinstance(value, dict | list):
            text = json.dumps(value, default=str, separators=(", ", ": "))
        else:
            text = str(value)
        shown.append((key, text if len(text) <= 400 else f"{text[:400]}…"))
    return shown


def _order_links(
    request: HttpRequest, order: Order, escrow: Escrow | None
) -> list[tuple[str, str, str]]:
    """(what, text, admin URL or "") for the people and records around an order."""
    links = [
        (
            "Buyer",
            str(order.buyer),
            admin_link(request, "orchestrator.marketplaceuser", order.buyer_id),
        ),
        (
            "Seller",
            str(order.seller),
            admin_link(request, "orchestrator.marketplaceuser", order.seller_id),
        ),
        (
            "Marketplace",
            str(order.marketplace),
            admin_link(request, "orchestrator.marketplace", order.marketplace_id),
        ),
    ]
    if escrow is not None:
        contract = (
            f"{escrow.public_id} ({escrow.status}), contract {escrow.contract_id or 'not deployed'}"
        )
        links.append(("Escrow contract", contract, admin_link(request, "escrow.escrow", escrow.pk)))
    if order.hold_id is not None:
        links.append(
            ("Reservation", str(order.hold), admin_link(request, "ledger.hold", order.hold_id))
        )
    for dispute in Dispute.objects.filter(order=order).order_by("id"):
        links.append(("Dispute", str(dispute), admin_link(request, "escrow.dispute", dispute.pk)))
    if request.user.has_perm("ledger.view_journalentry"):
        entries = reverse("admin:ledger_journalentry_changelist")
        reference = f"order:{order.public_id}"
        links.append(("Ledger transactions", reference, f"{entries}?{urlencode({'q': reference})}"))
    return links


@admin.register(Escrow)
class EscrowAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "order",
        "kind",
        "status",
        "contract_id",
        "needs_attention",
        "last_error",
        "updated_at",
    )
    list_filter = ("status", "kind", "needs_attention")
    search_fields = ("public_id", "contract_id", "order__public_id")


# --- Disputes ----------------------------------------------------------------------------------


class DisputeAgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    BANDS = {
        "day": ("Under a day", 0, 1),
        "week": ("1 to 7 days", 1, 7),
        "older": ("Over 7 days", 7, None),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _, _) in self.BANDS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        band = self.BANDS.get(self.value() or "")
        if band is None:
            return queryset
        now = timezone.now()
        _, newest, oldest = band
        queryset = queryset.filter(created_at__lte=now - timedelta(days=newest))
        if oldest is not None:
            queryset = queryset.filter(created_at__gt=now - timedelta(days=oldest))
        return queryset


class DisputeAssigneeFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "assignee"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        staff = (
            Dispute.objects.exclude(assignee=None)
            .values_list("assignee_id", "assignee__username")
            .distinct()
            .order_by("assignee__username")
        )
        return [("me", "Assigned to me"), ("none", "Unassigned")] + [
            (str(pk), name) for pk, name in staff
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "me":
            return queryset.filter(assignee_id=request.user.pk)
        if value == "none":
            return queryset.filter(assignee=None, assigned_to="")
        if value and value.isdigit():
            return queryset.filter(assignee_id=int(value))
        return queryset


class ResolutionForm(forms.Form):
    """The decision: everything to one side, or a split; always with a reason."""

    decision = forms.ChoiceField(choices=Dispute.Decision.choices, widget=forms.RadioSelect)
    release_amount = forms.CharField(
        required=False, label="To the seller (USD)", help_text="For a split only, e.g. 72.00"
    )
    refund_amount = forms.CharField(
        required=False, label="To the buyer (USD)", help_text="For a split only, e.g. 48.00"
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=5000,
        help_text="Why: kept with the decision and in the audit log.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        split = data.get("decision") == Dispute.Decision.SPLIT
        for name in ("release_amount", "refund_amount"):
            text = (data.get(name) or "").strip()
            if not split:
                if text:
                    self.add_error(name, "Only for a split: a full decision pays out everything.")
                data[name] = None
            elif not text:
                self.add_error(name, "Required for a split.")
            else:
                try:
                    data[name] = Money.parse(text, "USD")
                except DomainError as exc:
                    self.add_error(name, exc.message)
        if not (data.get("reason") or "").strip():
            self.add_error("reason", "Give the reason for this decision.")
        return data


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "order_link",
        "marketplace",
        "status",
        "age",
        "opened_by",
        "reason",
        "assignee_name",
        "decision",
    )
    list_filter = ("status", DisputeAgeFilter, DisputeAssigneeFilter, "marketplace", "decision")
    search_fields = ("public_id", "order__public_id", "assigned_to", "assignee__username")
    list_select_related = ("order", "marketplace", "assignee")
    ordering = ("created_at",)  # oldest first: a queue
    actions = ["assign_to_me"]
    change_form_template = "admin/escrow/dispute/change_form.html"
    exclude = ("evidence",)

    def has_assign_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("escrow.assign_dispute")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("escrow.resolve_dispute")

    def has_note_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("escrow.add_disputenote")

    @admin.display(description="Order", ordering="order__public_id")
    def order_link(self, obj: Dispute) -> str:
        url = reverse("admin:escrow_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.public_id)

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: Dispute) -> str:
        hours = int((timezone.now() - obj.created_at).total_seconds() // 3600)
        return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h"

    @admin.display(description="Assignee", ordering="assignee__username")
    def assignee_name(self, obj: Dispute) -> str:
        return obj.assignee.get_username() if obj.assignee else obj.assigned_to

    @admin.action(description="Assign the selected disputes to me", permissions=["assign"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        done, refused = 0, []
        for dispute in queryset:
            try:
                self._assign(request, dispute)
                done += 1
            except DomainError as exc:
                refused.append(f"{dispute.public_id}: {exc.message}")
        if done:
            self.message_user(request, f"{done} dispute(s) assigned to you.", messages.SUCCESS)
        for problem in refused:
            self.message_user(request, problem, messages.ERROR)

    def _assign(self, request: HttpRequest, dispute: Dispute) -> None:
        with acting_as(staff_actor(request)):
            dispute_assign(
                dispute=dispute,
                assigned_to=request.user.get_username(),
                assignee=request.user,  # type: ignore[arg-type]
            )

    def get_urls(self) -> list[URLPattern]:
        def view(fn: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(fn)

        return [
            path(
                "<path:object_id>/assign/",
                view(require_POST(self.assign_view)),
                name="escrow_dispute_assign",
            ),
            path(
                "<path:object_id>/notes/",
                view(require_POST(self.note_view)),
                name="escrow_dispute_note",
            ),
            path(
                "<path:object_id>/resolve/", view(self.resolve_view), name="escrow_dispute_resolve"
            ),
            *super().get_urls(),
        ]

    def _dispute(self, request: HttpRequest, object_id: str, allowed: bool) -> Dispute:
        if not allowed:
            raise PermissionDenied
        dispute: Dispute = get_object_or_404(
            Dispute.objects.select_related("order", "order__buyer", "order__seller"),
            pk=object_id,
        )
        return dispute

    def _page(self, dispute: Dispute) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:escrow_dispute_change", args=[dispute.pk]))

    def object_context(self, request: HttpRequest, obj: Dispute) -> dict[str, Any]:
        notes = DisputeNote.objects.filter(dispute=obj).select_related("author")
        return {
            "dispute": obj,
            "evidence": [str(item) for item in obj.evidence or []],
            "notes": notes if request.user.has_perm("escrow.view_disputenote") else None,
            "can_assign": self.has_assign_permission(request) and _assignable(request, obj),
            "can_note": self.has_note_permission(request),
            "can_resolve": self.has_resolve_permission(request)
            and obj.status == Dispute.Status.UNDER_REVIEW
            and not obj.decision,
            "order_url": reverse("admin:escrow_order_change", args=[obj.order_id]),
        }

    def assign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._dispute(request, object_id, self.has_assign_permission(request))
        try:
            self._assign(request, dispute)
            self.message_user(request, f"{dispute.public_id} is assigned to you.", messages.SUCCESS)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        return self._page(dispute)

    def note_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._dispute(request, object_id, self.has_note_permission(request))
        try:
            with acting_as(staff_actor(request)):
                dispute_note_add(
                    dispute=dispute,
                    author=request.user,  # type: ignore[arg-type]
                    body=request.POST.get("body", ""),
                )
            self.message_user(request, "Note added.", messages.SUCCESS)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        return self._page(dispute)

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The decision form: preview each side's net after fees, then confirm.

        Confirming recomputes the preview and proceeds only if it is the one shown (its
        fingerprint), then calls dispute_resolve as the API does.
        """
        dispute = self._dispute(request, object_id, self.has_resolve_permission(request))
        preview: ResolutionPreview | None = None
        form = ResolutionForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                preview = dispute_preview(
                    dispute=dispute,
                    decision=data["decision"],
                    release_amount=data["release_amount"],
                    refund_amount=data["refund_amount"],
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            if preview is not None and "_confirm" in request.POST:
                if request.POST.get("fingerprint") == preview.fingerprint():
                    return self._decide(request, dispute, data)
                messages.warning(request, "The figures are not the ones previewed: check them.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Decide {dispute.public_id}",
            "dispute": dispute,
            "form": form,
            "preview": preview,
            "original": dispute,
        }
        return TemplateResponse(request, "admin/escrow/dispute/resolve.html", context)

    def _decide(self, request: HttpRequest, dispute: Dispute, data: dict[str, Any]) -> HttpResponse:
        try:
            with acting_as(staff_actor(request)):
                dispute_resolve(
                    dispute=dispute,
                    decision=data["decision"],
                    release_amount=data["release_amount"],
                    refund_amount=data["refund_amount"],
                    note=data["reason"].strip(),
                )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return self._page(dispute)
        self.message_user(
            request,
            f"{dispute.public_id} decided ({data['decision']}); the payout follows on chain.",
            messages.SUCCESS,
        )
        return self._page(dispute)


def _assignable(request: HttpRequest, dispute: Dispute) -> bool:
    return dispute.status == Dispute.Status.OPEN or (
        dispute.status == Dispute.Status.UNDER_REVIEW
        and not dispute.decision
        and dispute.assignee_id != request.user.pk
    )


@admin.register(ChainStep)
class ChainStepAdmin(ReadOnlyAdmin):
    list_display = ("escrow", "key", "status", "attempts", "tx_hash", "last_error", "updated_at")
    list_filter = ("status", "action")
    search_fields = ("escrow__public_id", "tx_hash")
    exclude = ("signed_xdr",)
