"""The audit log in the admin: filters and search, read-only for every role; and the admin
changes that write it (marketplaces are saved through orchestrator.services)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator.models import AuditLog, Marketplace

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

LOG = "/admin/orchestrator/auditlog/"


def listed(response) -> list[str]:
    assert response.status_code == 200
    return sorted(row.action for row in response.context["cl"].result_list)


@pytest.fixture
def rows(marketplace, other_marketplace) -> dict[str, AuditLog]:
    """Three audit rows of different kinds, marketplaces and days."""
    return {
        "old": AuditLog.objects.create(
            marketplace=marketplace,
            actor_kind="staff",
            actor_id="ana",
            action="dispute.decided",
            object_type="dispute",
            object_id="dsp_1",
            reason="half each",
            created_at=timezone.now() - timedelta(days=40),
        ),
        "key": AuditLog.objects.create(
            marketplace=other_marketplace,
            actor_kind="api_key",
            actor_id="key_1",
            action="order.status_changed",
            object_type="order",
            object_id="ord_1",
        ),
    }


def test_the_audit_log_filters_by_action_object_actor_marketplace_and_date(
    staff_client, rows, marketplace, other_marketplace
):
    client = staff_client("finance")
    last_month = rows["old"].created_at

    by_action = client.get(LOG, {"action": "dispute.decided"})
    by_object = client.get(LOG, {"object_type": "order"})
    by_actor = client.get(LOG, {"actor_kind": "staff"})
    by_market = client.get(LOG, {"marketplace__id__exact": other_marketplace.pk})
    by_month = client.get(
        LOG, {"created_at__year": last_month.year, "created_at__month": last_month.month}
    )
    by_search = client.get(LOG, {"q": "half each"})

    assert listed(by_action) == ["dispute.decided"]
    assert listed(by_object) == ["order.status_changed"]
    assert listed(by_actor) == ["dispute.decided"]
    # The other marketplace's own creation row, and the order change.
    assert listed(by_market) == ["marketplace.created", "order.status_changed"]
    assert "dispute.decided" in listed(by_month)
    assert "order.status_changed" not in listed(by_month)
    assert listed(by_search) == ["dispute.decided"]


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_the_audit_log_is_read_only(staff_client, rows, role):
    client = staff_client(role)
    row = rows["old"]

    page = client.get(f"{LOG}{row.pk}/change/")
    add = client.get(f"{LOG}add/")
    change = client.post(f"{LOG}{row.pk}/change/", {"reason": "rewritten"})
    delete = client.post(f"{LOG}{row.pk}/delete/", {"post": "yes"})

    assert page.status_code == 200
    assert "half each" in page.content.decode()
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert AuditLog.objects.get(pk=row.pk).reason == "half each"


def test_marketplaces_are_created_and_changed_through_the_audited_services(staff_client):
    client = staff_client("admin", "root")

    created = client.post(
        "/admin/orchestrator/marketplace/add/",
        {"name": "Bazaar", "slug": "bazaar", "platform_fee_bps": "150", "is_active": "on"},
    )
    market = Marketplace.objects.get(slug="bazaar")
    changed = client.post(
        f"/admin/orchestrator/marketplace/{market.pk}/change/",
        {"name": "Bazaar", "platform_fee_bps": "200", "is_active": "on"},
    )

    assert (created.status_code, changed.status_code) == (302, 302)
    assert Marketplace.objects.get(pk=market.pk).platform_fee_bps == 200
    made = AuditLog.objects.get(action="marketplace.created", object_id=market.public_id)
    updated = AuditLog.objects.get(action="marketplace.updated", object_id=market.public_id)
    assert (made.actor_kind, made.actor_id) == ("staff", "root")
    assert made.after == {"name": "Bazaar", "slug": "bazaar", "platform_fee_bps": 150}
    assert updated.actor_id == "root"
    assert (updated.before, updated.after) == (
        {"name": "Bazaar", "platform_fee_bps": 150, "is_active": True},
        {"name": "Bazaar", "platform_fee_bps": 200, "is_active": True},
    )
