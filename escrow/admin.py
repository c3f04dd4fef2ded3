"""Back-office views of orders, escrows, milestones, disputes and chain steps: read-only
(every change goes through escrow.services, with its ledger entry, audit row and event).
The order page shows the whole timeline (escrow.selectors.order_timeline)."""

from typing import Any

from django.contrib import admin
from django.utils.html import format_html_join

from escrow.models import ChainStep, Dispute, Escrow, Milestone, Order
from escrow.selectors import order_timeline
from orchestrator.admin import ReadOnlyAdmin


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
    readonly_fields = ("timeline",)
    inlines = [MilestoneInline]

    @admin.display(description="Timeline")
    def timeline(self, obj: Order) -> str:
        rows = [
            (item.at.isoformat(timespec="seconds"), item.kind, item.title, str(item.details)[:300])
            for item in order_timeline(order=obj)
        ]
        return format_html_join(
            "\n", "<div><code>{}</code> <b>{}</b> {} <small>{}</small></div>", rows
        )


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


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "order",
        "status",
        "opened_by",
        "reason",
        "assigned_to",
        "decision",
    )
    list_filter = ("status", "decision", "reason")
    search_fields = ("public_id", "order__public_id", "assigned_to")


@admin.register(ChainStep)
class ChainStepAdmin(ReadOnlyAdmin):
    list_display = ("escrow", "key", "status", "attempts", "tx_hash", "last_error", "updated_at")
    list_filter = ("status", "action")
    search_fields = ("escrow__public_id", "tx_hash")
    exclude = ("signed_xdr",)
