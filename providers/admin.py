"""Read-only views of top-ups, withdrawals, Airtm links and provider calls.

Money moves only through providers.services (state machines and ledger entries); the
back-office issue adds the operator actions that call them.
"""

from django.contrib import admin

from orchestrator.admin import ReadOnlyAdmin
from providers.models import AirtmLink, ProviderCall, TopUp, Withdrawal


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "status",
        "amount",
        "currency",
        "user",
        "marketplace",
        "created_at",
    )
    list_filter = ("status", "marketplace")
    search_fields = ("public_id", "airtm_payin_id", "user__public_id", "payer_email")


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "status",
        "amount",
        "currency",
        "user",
        "marketplace",
        "created_at",
    )
    list_filter = ("status", "marketplace")
    search_fields = ("public_id", "airtm_payout_id", "user__public_id", "destination_email")


@admin.register(AirtmLink)
class AirtmLinkAdmin(ReadOnlyAdmin):
    list_display = ("user", "email", "airtm_user_id", "airtm_status", "is_verified", "checked_at")
    search_fields = ("email", "user__public_id", "airtm_user_id")


@admin.register(ProviderCall)
class ProviderCallAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "provider",
        "operation",
        "method",
        "path",
        "response_status",
        "outcome",
        "duration_ms",
        "reference",
    )
    list_filter = ("provider", "operation", "outcome")
    search_fields = ("reference", "path", "request_id")
