"""Staff roles for the back-office, as Django groups with an exact set of permissions.

`sync_roles()` makes each group hold exactly the permissions listed here (it runs after every
`migrate`, and as `manage.py sync_roles`). Membership is managed in the admin by an admin-role
user. A permission listed here that does not exist is an error, so a typo cannot silently leave
a role without the right it was meant to have.

Add a permission to a role in the same change that adds the page or action it guards; the
admin checks `request.user.has_perm("app_label.codename")`.
"""

from collections.abc import Iterable

from django.contrib.auth.models import Group, Permission
from django.db import transaction

SUPPORT = "support"
FINANCE = "finance"
ADMIN = "admin"

# Read-only access to the records every role looks at.
_COMMON_VIEW: tuple[str, ...] = (
    "orchestrator.view_marketplace",
    "orchestrator.view_marketplaceuser",
    "escrow.view_order",
    "escrow.view_escrow",
    "escrow.view_milestone",
    "escrow.view_dispute",
    "ledger.view_account",
    "ledger.view_journalentry",
    "ledger.view_posting",
    "ledger.view_hold",
)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    # Disputes, and reading orders and users.
    SUPPORT: (
        *_COMMON_VIEW,
        "escrow.assign_dispute",
        "escrow.resolve_dispute",
        "escrow.view_disputenote",
        "escrow.add_disputenote",
    ),
    # Reconciliation, adjustments, webhooks, provider records.
    FINANCE: (
        *_COMMON_VIEW,
        "providers.view_topup",
        "providers.view_withdrawal",
        "providers.view_providercall",
        "webhooks.view_inboundwebhook",
        "webhooks.view_webhookendpoint",
        "webhooks.view_webhookdelivery",
        "orchestrator.view_auditlog",
        "orchestrator.view_event",
        "ledger.view_reconciliationcase",
        "ledger.resolve_reconciliationcase",
        "ledger.view_adjustment",
        "ledger.add_adjustment",
        "ledger.approve_adjustment",
        "ledger.export_entries",
        "ledger.export_statement",
        "webhooks.replay_delivery",
        "webhooks.view_inboundrejection",
    ),
}
# The admin role holds every permission of the project's apps and of auth (users, groups).
ADMIN_APPS = ("orchestrator", "ledger", "providers", "escrow", "webhooks", "auth")


def _permissions(names: Iterable[str]) -> list[Permission]:
    wanted = set(names)
    by_name = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.select_related("content_type").filter(
            content_type__app_label__in={n.split(".", 1)[0] for n in wanted}
        )
    }
    missing = sorted(wanted - by_name.keys())
    if missing:
        raise LookupError(f"unknown permissions in orchestrator.roles: {', '.join(missing)}")
    return [by_name[n] for n in sorted(wanted)]


@transaction.atomic
def sync_roles() -> dict[str, int]:
    """Create or update the role groups; returns the number of permissions each now holds."""
    counts: dict[str, int] = {}
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(_permissions(names))
        counts[role] = len(names)
    admin_group, _ = Group.objects.get_or_create(name=ADMIN)
    admin_perms = list(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
    admin_group.permissions.set(admin_perms)
    counts[ADMIN] = len(admin_perms)
    return counts


# --- Back-office pages and actions (disputes, order timeline, webhooks) ---------------------
# Support works the dispute queue: assigns, keeps notes, decides; reads orders and users
# (the common view permissions above). Finance replays outbound deliveries and reads the
# inbound provider webhooks, refused ones included. API keys and marketplaces are the admin
# role's alone (it holds every permission).
