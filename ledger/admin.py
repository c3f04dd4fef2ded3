"""Read-only views of the ledger: money changes only through services."""

from django.contrib import admin

from ledger.models import Account, AccountShard, ChainHead, Hold, JournalEntry, Posting
from orchestrator.admin import ReadOnlyAdmin


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
