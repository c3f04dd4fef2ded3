"""Who may do what on the back-office pages of part A: each role (support, finance, admin, and
a staff member with no role) on each page and action.

Support reads users (balances and statements) and the dashboard's order and dispute figures;
finance also exports, works reconciliation cases and requests and approves adjustments;
admin may do everything.
"""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from ledger.adjustments import adjustment_request
from ledger.integrity import Finding
from ledger.models import Adjustment, ReconciliationCase
from ledger.reconciliation import case_open
from orchestrator.models import AuditLog
from orchestrator.roles import ADMIN, FINANCE, SUPPORT
from tests.ledger.conftest import fund, usd

pytestmark = pytest.mark.django_db

NO_ROLE = None
ALL_ROLES = (SUPPORT, FINANCE, ADMIN, NO_ROLE)


@pytest.fixture(autouse=True)
def _threshold(settings):
    settings.ADJUSTMENT_APPROVAL_THRESHOLD = Decimal("100")


@pytest.fixture
def world(buyer, finance):
    """A user with money, an open case and a pending adjustment finance's Fiona asked for."""
    fund(buyer, usd("250"))
    case = case_open(
        finding=Finding(kind=ReconciliationCase.Kind.STUCK, key="stuck:topup:t", summary="stuck"),
        source="test",
    )
    adjustment = adjustment_request(
        user=buyer, amount=usd("150"), direction="credit", reason="Owed", requested_by=finance
    )
    return SimpleNamespace(buyer=buyer, case=case, adjustment=adjustment, requester=finance)


PAGES = {
    "user page": lambda w: f"/admin/orchestrator/marketplaceuser/{w.buyer.pk}/change/",
    "statement csv": lambda w: f"/admin/orchestrator/marketplaceuser/{w.buyer.pk}/statement.csv",
    "ledger export form": lambda w: "/admin/ledger/journalentry/export/",
    "ledger export csv": lambda w: (
        "/admin/ledger/journalentry/export/?start=2020-01-01&end=2099-12-31"
    ),
    "case list": lambda w: "/admin/ledger/reconciliationcase/",
    "case page": lambda w: f"/admin/ledger/reconciliationcase/{w.case.pk}/change/",
    "adjustment list": lambda w: "/admin/ledger/adjustment/",
    "adjustment page": lambda w: f"/admin/ledger/adjustment/{w.adjustment.pk}/change/",
    "adjustment request form": lambda w: "/admin/ledger/adjustment/add/",
}
SUPPORT_PAGES = {"user page"}
ROLE_PAGES = {
    SUPPORT: SUPPORT_PAGES,
    FINANCE: set(PAGES),
    ADMIN: set(PAGES),
    NO_ROLE: set(),
}


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_each_role_reaches_exactly_its_pages(world, staff_client, role, page):
    response = staff_client(role).get(PAGES[page](world))

    expected = 200 if page in ROLE_PAGES[role] else 403
    assert response.status_code == expected


@pytest.mark.parametrize(
    ("role", "sees_statement", "sees_csv_link"),
    [(SUPPORT, True, False), (FINANCE, True, True), (ADMIN, True, True)],
)
def test_the_user_page_shows_the_statement_and_offers_the_csv_to_exporters_only(
    world, staff_client, role, sees_statement, sees_csv_link
):
    page = staff_client(role).get(PAGES["user page"](world)).content.decode()

    assert ('id="balances"' in page) is True
    assert ('id="statement"' in page) is sees_statement
    assert ("Download CSV" in page) is sees_csv_link


@pytest.mark.parametrize(("role", "sees_link"), [(SUPPORT, False), (FINANCE, True), (ADMIN, True)])
def test_the_ledger_entries_list_offers_the_export_to_exporters_only(
    world, staff_client, role, sees_link
):
    response = staff_client(role).get("/admin/ledger/journalentry/")

    assert response.status_code == 200
    assert (b"/admin/ledger/journalentry/export/" in response.content) is sees_link


# --- Reconciliation actions --------------------------------------------------------------------


def case_action(client: Client, case: ReconciliationCase, action: str, **form: str):
    return client.post(
        "/admin/ledger/reconciliationcase/",
        {"action": action, "_selected_action": [case.pk], **form},
    )


@pytest.mark.parametrize("role", [FINANCE, ADMIN])
def test_finance_and_admin_resolve_a_case_with_a_note(world, staff_client, role):
    client = staff_client(role)

    asked = case_action(client, world.case, "resolve_fixed")
    done = case_action(client, world.case, "resolve_fixed", apply="1", reason="Re-sent the payout")

    world.case.refresh_from_db()
    assert asked.status_code == 200
    assert b'name="reason"' in asked.content
    assert done.status_code == 302
    assert world.case.status == ReconciliationCase.Status.RESOLVED
    assert world.case.resolution == ReconciliationCase.Resolution.FIXED
    audit = AuditLog.objects.get(action="reconciliation_case.resolved")
    assert (audit.actor_kind, audit.reason) == ("staff", "Re-sent the payout")


def test_a_resolution_without_a_note_is_not_applied(world, staff_client):
    response = case_action(
        staff_client(FINANCE), world.case, "resolve_no_action", apply="1", reason=""
    )

    world.case.refresh_from_db()
    assert response.status_code == 200  # the form again, with its error
    assert world.case.status == ReconciliationCase.Status.OPEN


@pytest.mark.parametrize("role", [FINANCE, ADMIN])
def test_finance_and_admin_assign_a_case_to_themselves(world, staff_client, make_staff, role):
    user = make_staff(role)
    client = Client()
    client.force_login(user)

    response = case_action(client, world.case, "assign_to_me")

    world.case.refresh_from_db()
    assert response.status_code == 302
    assert world.case.assigned_to == user.username


@pytest.mark.parametrize("role", [SUPPORT, NO_ROLE])
def test_support_and_staff_without_a_role_cannot_touch_cases(world, staff_client, role):
    client = staff_client(role)

    assigned = case_action(client, world.case, "assign_to_me")
    resolved = case_action(client, world.case, "resolve_fixed", apply="1", reason="x")

    world.case.refresh_from_db()
    assert (assigned.status_code, resolved.status_code) == (403, 403)
    assert (world.case.status, world.case.assigned_to) == (ReconciliationCase.Status.OPEN, "")


def with_permissions(make_staff, *codenames: str) -> Client:
    user = make_staff(NO_ROLE)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="ledger", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def test_reading_cases_does_not_allow_resolving_them(world, make_staff):
    client = with_permissions(make_staff, "view_reconciliationcase")

    listing = client.get("/admin/ledger/reconciliationcase/")
    response = case_action(client, world.case, "resolve_fixed", apply="1", reason="x")

    world.case.refresh_from_db()
    assert listing.status_code == 200
    assert b"resolve_fixed" not in listing.content
    assert response.status_code in (200, 302)
    assert world.case.status == ReconciliationCase.Status.OPEN


# --- Adjustment actions ------------------------------------------------------------------------


def request_adjustment(client: Client, buyer, amount: str = "10.00"):
    return client.post(
        "/admin/ledger/adjustment/add/",
        {
            "user": buyer.public_id,
            "direction": "credit",
            "amount": amount,
            "currency": "USD",
            "reason": "Goodwill credit",
            "case": "",
        },
    )


def adjustment_action(client: Client, adjustment: Adjustment, action: str, **form: str):
    return client.post(
        "/admin/ledger/adjustment/",
        {"action": action, "_selected_action": [adjustment.pk], "apply": "1", **form},
    )


@pytest.mark.parametrize("role", [FINANCE, ADMIN])
def test_finance_and_admin_request_adjustments(world, staff_client, role):
    response = request_adjustment(staff_client(role), world.buyer)

    adjustment = Adjustment.objects.get(reason="Goodwill credit")
    assert response.status_code == 302
    assert response["Location"] == f"/admin/ledger/adjustment/{adjustment.pk}/change/"
    assert adjustment.status == Adjustment.Status.POSTED
    assert adjustment.requested_by.groups.get().name == role


def test_an_adjustment_above_the_threshold_from_the_form_waits_for_approval(world, staff_client):
    response = request_adjustment(staff_client(FINANCE), world.buyer, amount="100.01")

    assert response.status_code == 302
    assert Adjustment.objects.get(reason="Goodwill credit").status == (
        Adjustment.Status.PENDING_APPROVAL
    )


def test_the_request_form_shows_service_refusals(world, staff_client):
    response = request_adjustment(staff_client(FINANCE), world.buyer, amount="0.001")

    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert not Adjustment.objects.filter(reason="Goodwill credit").exists()


@pytest.mark.parametrize("role", [SUPPORT, NO_ROLE])
def test_support_and_staff_without_a_role_cannot_request_adjustments(world, staff_client, role):
    response = request_adjustment(staff_client(role), world.buyer)

    assert response.status_code == 403
    assert not Adjustment.objects.filter(reason="Goodwill credit").exists()


@pytest.mark.parametrize("role", [FINANCE, ADMIN])
def test_another_finance_or_admin_member_approves(world, staff_client, role):
    response = adjustment_action(staff_client(role), world.adjustment, "approve")

    world.adjustment.refresh_from_db()
    assert response.status_code == 302
    assert world.adjustment.status == Adjustment.Status.POSTED
    assert world.adjustment.approved_by.groups.get().name == role


def test_the_requester_cannot_approve_their_own_from_the_admin(world):
    client = Client()
    client.force_login(world.requester)

    response = adjustment_action(client, world.adjustment, "approve")
    page = client.get("/admin/ledger/adjustment/").content.decode()

    world.adjustment.refresh_from_db()
    assert response.status_code == 302
    assert world.adjustment.status == Adjustment.Status.PENDING_APPROVAL
    assert "A second staff member must approve this adjustment" in page


@pytest.mark.parametrize("role", [FINANCE, ADMIN])
def test_finance_and_admin_reject_with_a_reason(world, staff_client, role):
    response = adjustment_action(staff_client(role), world.adjustment, "reject", reason="Not owed")

    world.adjustment.refresh_from_db()
    assert response.status_code == 302
    assert world.adjustment.status == Adjustment.Status.REJECTED
    assert world.adjustment.rejection_reason == "Not owed"


@pytest.mark.parametrize("role", [SUPPORT, NO_ROLE])
def test_support_and_staff_without_a_role_cannot_approve_or_reject(world, staff_client, role):
    client = staff_client(role)

    approved = adjustment_action(client, world.adjustment, "approve")
    rejected = adjustment_action(client, world.adjustment, "reject", reason="x")

    world.adjustment.refresh_from_db()
    assert (approved.status_code, rejected.status_code) == (403, 403)
    assert world.adjustment.status == Adjustment.Status.PENDING_APPROVAL


def test_requesting_adjustments_does_not_allow_approving_them(world, make_staff):
    client = with_permissions(make_staff, "view_adjustment", "add_adjustment")

    listing = client.get("/admin/ledger/adjustment/")
    response = adjustment_action(client, world.adjustment, "approve")

    world.adjustment.refresh_from_db()
    assert listing.status_code == 200
    assert b'value="approve"' not in listing.content
    assert response.status_code in (200, 302)
    assert world.adjustment.status == Adjustment.Status.PENDING_APPROVAL


# --- Dashboard ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "sections", "volume_rows"),
    [
        (SUPPORT, {"volume", "disputes", "stuck"}, ["Orders created"]),
        (
            FINANCE,
            {"volume", "disputes", "stuck", "webhooks"},
            ["Orders created", "Top-ups succeeded", "Withdrawals completed"],
        ),
        (
            ADMIN,
            {"volume", "disputes", "stuck", "webhooks"},
            ["Orders created", "Top-ups succeeded", "Withdrawals completed"],
        ),
        (NO_ROLE, set(), []),
    ],
)
def test_the_dashboard_shows_each_role_what_it_may_read(
    world, staff_client, role, sections, volume_rows
):
    response = staff_client(role).get("/admin/")

    page = response.content.decode()
    shown = {
        s for s in ("volume", "disputes", "stuck", "webhooks") if f'id="dashboard-{s}"' in page
    }
    assert response.status_code == 200
    assert shown == sections
    for label in ("Orders created", "Top-ups succeeded", "Withdrawals completed"):
        assert (f">{label}</a>" in page) is (label in volume_rows)
    assert ("Open cases: Stuck object" in page) is (role in (FINANCE, ADMIN))
