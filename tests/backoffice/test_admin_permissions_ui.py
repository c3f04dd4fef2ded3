"""Each role on each back-office page and action of the disputes, orders, webhooks, API keys
and audit pages: allowed where orchestrator.roles grants it, 403 (or no effect) elsewhere.
Money records stay read-only for every role, the admin's included."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.test import Client

from escrow.models import Dispute, DisputeNote
from ledger.models import JournalEntry
from orchestrator.models import ApiKey, AuditLog
from tests.providers.support import fund
from webhooks.models import InboundRejection, InboundWebhook, WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ROLES = ("support", "finance", "admin", "")  # "": a staff login without a role


@dataclass(frozen=True)
class World:
    dispute: Dispute
    delivery: WebhookDelivery
    inbound: InboundWebhook
    rejection: InboundRejection
    key: ApiKey
    user_pk: int


@pytest.fixture
def world(bare_dispute, make_endpoint, make_user, make_key, marketplace) -> World:
    make_endpoint(marketplace, "http://127.0.0.1:9/hook")
    user = make_user(marketplace)  # user.created: one delivery to the endpoint
    inbound = InboundWebhook.objects.create(
        provider="airtm", message_id="msg_1", event_type="payin.succeeded", body="{}"
    )
    rejection = InboundRejection.objects.create(
        provider="airtm", code="WEBHOOK_SIGNATURE_INVALID", reason="No signature matches."
    )
    key, _ = make_key(marketplace)
    return World(
        dispute=bare_dispute(),
        delivery=WebhookDelivery.objects.get(),
        inbound=inbound,
        rejection=rejection,
        key=key,
        user_pk=user.pk,
    )


@dataclass(frozen=True)
class Case:
    name: str
    allowed: frozenset[str]
    url: Callable[[World], str]
    method: str = "get"
    data: Callable[[World], dict[str, Any]] = lambda w: {}


SUPPORT_SIDE = frozenset({"support", "admin"})
FINANCE_SIDE = frozenset({"finance", "admin"})
EVERY_ROLE = frozenset({"support", "finance", "admin"})
ADMIN_ONLY = frozenset({"admin"})

CASES = [
    Case("dispute queue", EVERY_ROLE, lambda w: "/admin/escrow/dispute/"),
    Case("dispute page", EVERY_ROLE, lambda w: f"/admin/escrow/dispute/{w.dispute.pk}/change/"),
    Case(
        "decision form",
        SUPPORT_SIDE,
        lambda w: f"/admin/escrow/dispute/{w.dispute.pk}/resolve/",
    ),
    Case(
        "assign to me",
        SUPPORT_SIDE,
        lambda w: f"/admin/escrow/dispute/{w.dispute.pk}/assign/",
        "post",
    ),
    Case(
        "add a note",
        SUPPORT_SIDE,
        lambda w: f"/admin/escrow/dispute/{w.dispute.pk}/notes/",
        "post",
        lambda w: {"body": "checked"},
    ),
    Case("orders", EVERY_ROLE, lambda w: "/admin/escrow/order/"),
    Case(
        "order timeline", EVERY_ROLE, lambda w: f"/admin/escrow/order/{w.dispute.order_id}/change/"
    ),
    Case("users", EVERY_ROLE, lambda w: "/admin/orchestrator/marketplaceuser/"),
    Case(
        "user page",
        EVERY_ROLE,
        lambda w: f"/admin/orchestrator/marketplaceuser/{w.user_pk}/change/",
    ),
    Case("webhook deliveries", FINANCE_SIDE, lambda w: "/admin/webhooks/webhookdelivery/"),
    Case(
        "delivery page",
        FINANCE_SIDE,
        lambda w: f"/admin/webhooks/webhookdelivery/{w.delivery.pk}/change/",
    ),
    Case(
        "replay a delivery",
        FINANCE_SIDE,
        lambda w: f"/admin/webhooks/webhookdelivery/{w.delivery.pk}/replay/",
        "post",
    ),
    Case("inbound webhooks", FINANCE_SIDE, lambda w: "/admin/webhooks/inboundwebhook/"),
    Case(
        "inbound webhook page",
        FINANCE_SIDE,
        lambda w: f"/admin/webhooks/inboundwebhook/{w.inbound.pk}/change/",
    ),
    Case("refused inbound webhooks", FINANCE_SIDE, lambda w: "/admin/webhooks/inboundrejection/"),
    Case("API keys", ADMIN_ONLY, lambda w: "/admin/orchestrator/apikey/"),
    Case("API key page", ADMIN_ONLY, lambda w: f"/admin/orchestrator/apikey/{w.key.pk}/change/"),
    Case("create an API key", ADMIN_ONLY, lambda w: "/admin/orchestrator/apikey/add/"),
    Case("audit log", FINANCE_SIDE, lambda w: "/admin/orchestrator/auditlog/"),
    Case("marketplaces", EVERY_ROLE, lambda w: "/admin/orchestrator/marketplace/"),
    Case("create a marketplace", ADMIN_ONLY, lambda w: "/admin/orchestrator/marketplace/add/"),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_role_reaches_exactly_its_pages_and_actions(staff_client, world, role, case):
    client = staff_client(role)

    response = getattr(client, case.method)(case.url(world), case.data(world))

    if role in case.allowed:
        assert response.status_code in (200, 302), response.status_code
        assert not (response.status_code == 302 and "/login/" in response["Location"])
    else:
        assert response.status_code == 403


def action_choices(client: Client, url: str) -> set[str]:
    response = client.get(url)
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action is offered
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


@pytest.mark.parametrize(
    ("role", "dispute_actions", "delivery_actions", "key_actions"),
    [
        ("support", {"assign_to_me"}, None, None),
        ("finance", set(), {"replay"}, None),
        ("admin", {"assign_to_me"}, {"replay"}, {"revoke"}),
    ],
)
def test_list_actions_are_offered_to_the_roles_that_hold_their_permission(
    staff_client, world, role, dispute_actions, delivery_actions, key_actions
):
    client = staff_client(role)

    assert action_choices(client, "/admin/escrow/dispute/") == dispute_actions
    for url, expected in (
        ("/admin/webhooks/webhookdelivery/", delivery_actions),
        ("/admin/orchestrator/apikey/", key_actions),
    ):
        if expected is None:
            assert client.get(url).status_code == 403
        else:
            assert action_choices(client, url) == expected


def test_an_action_posted_without_its_permission_does_nothing(staff_client, world):
    finance = staff_client("finance")

    finance.post(
        "/admin/escrow/dispute/",
        {"action": "assign_to_me", "_selected_action": [world.dispute.pk]},
    )
    refused_note = finance.post(f"/admin/escrow/dispute/{world.dispute.pk}/notes/", {"body": "x"})
    support = staff_client("support")
    refused_replay = support.post(
        "/admin/webhooks/webhookdelivery/",
        {"action": "replay", "_selected_action": [world.delivery.pk]},
    )
    refused_revoke = support.post(
        "/admin/orchestrator/apikey/",
        {"action": "revoke", "_selected_action": [world.key.pk]},
    )

    assert Dispute.objects.get(pk=world.dispute.pk).status == "OPEN"
    assert refused_note.status_code == 403
    assert not DisputeNote.objects.exists()
    assert (refused_replay.status_code, refused_revoke.status_code) == (403, 403)
    assert ApiKey.objects.get(pk=world.key.pk).revoked_at is None
    assert not AuditLog.objects.filter(actor_kind="staff").exists()


MONEY_RECORDS = [
    "ledger.account",
    "ledger.journalentry",
    "ledger.posting",
    "ledger.hold",
    "providers.topup",
    "providers.withdrawal",
    "escrow.order",
    "escrow.dispute",
    "orchestrator.auditlog",
]


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.mark.parametrize("who", ["admin", "superuser"])
def test_money_records_are_read_only_for_everyone(
    staff_client, superuser_client, world, buyer, who
):
    fund(buyer, "10.00")  # a journal entry, its postings and accounts to try
    client = superuser_client if who == "superuser" else staff_client("admin")
    for label in MONEY_RECORDS:
        model = apps.get_model(label)
        row = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
        base = f"/admin/{label.replace('.', '/')}/"

        listing = client.get(base)
        add = client.get(f"{base}add/")
        assert listing.status_code == 200, label
        assert add.status_code == 403, label
        if row is not None:
            change = client.post(f"{base}{row}/change/", {})
            delete = client.post(f"{base}{row}/delete/", {"post": "yes"})
            assert change.status_code == 403, label
            assert delete.status_code == 403, label
    assert JournalEntry.objects.filter(reference__startswith="test-fund:").count() == 1
