"""The dashboard on the admin's front page: volume, open disputes, stuck objects, failing
webhook endpoints."""

from decimal import Decimal

import pytest
from django.utils import timezone

from escrow.models import Dispute, Order
from ledger.integrity import Finding
from ledger.models import ReconciliationCase
from ledger.reconciliation import case_open
from orchestrator.dashboard import dashboard_for
from providers.models import TopUp
from tests.backoffice.conftest import days_ago
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def stuck_case(key: str) -> ReconciliationCase:
    finding = Finding(kind=ReconciliationCase.Kind.STUCK, key=key, summary="stuck")
    return case_open(finding=finding, source="test")


def test_volume_counts_and_sums_each_window(marketplace, buyer, seller, make_escrow, make_staff):
    make_escrow(marketplace, buyer, seller, amount="120.00")
    old = make_escrow(marketplace, buyer, seller, amount="30.50")
    Order.objects.filter(pk=old.order_id).update(created_at=days_ago(3))
    TopUp.objects.create(
        marketplace=marketplace,
        user=buyer,
        amount=Decimal("500.00"),
        status=TopUp.Status.SUCCEEDED,
        completed_at=timezone.now(),
    )

    board = dashboard_for(user=make_staff("admin"))

    volume = {row.label: row.cells for row in board.volume}
    assert board.windows == ["24 h", "7 days", "30 days"]
    assert volume["Orders created"] == ["1 · 120.00 USD", "2 · 150.50 USD", "2 · 150.50 USD"]
    assert volume["Top-ups succeeded"] == ["1 · 500.00 USD"] * 3
    assert volume["Withdrawals completed"] == ["0", "0", "0"]


def test_the_front_page_shows_disputes_stuck_objects_and_failing_endpoints(
    marketplace, buyer, seller, make_escrow, staff_client
):
    escrow = make_escrow(marketplace, buyer, seller, needs_attention=True)
    Dispute.objects.create(
        marketplace=marketplace, order=escrow.order, opened_by="BUYER", reason="NOT_DELIVERED"
    )
    stuck_case("stuck:topup:topup_1")
    stuck_case("stuck:topup:topup_2")
    WebhookEndpoint.objects.create(
        marketplace=marketplace, url="https://hooks.example/failing", failing_since=days_ago(1)
    )
    WebhookEndpoint.objects.create(
        marketplace=marketplace,
        url="https://hooks.example/off",
        is_enabled=False,
        disabled_reason="failing for 5 days",
    )
    WebhookEndpoint.objects.create(marketplace=marketplace, url="https://hooks.example/fine")

    response = staff_client("admin").get("/admin/")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="dashboard"' in page
    assert 'status__exact=OPEN">Open</a></th><td>1</td>' in page
    assert "Open, unassigned</a></th><td>1</td>" in page
    assert "Open cases: Stuck object</a></th><td>2</td>" in page
    assert "Escrows needing attention</a></th><td>1</td>" in page
    assert "https://hooks.example/failing" in page
    assert "disabled: failing for 5 days" in page
    assert "https://hooks.example/fine" not in page
