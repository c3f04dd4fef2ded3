"""End to end: the API, the Airtm simulator over HTTP, Svix webhooks into a live server, and
a real Celery worker processing them. The ledger must verify after every scenario."""

import pytest

from ledger.models import JournalEntry
from providers.models import TopUp, Withdrawal
from providers.tasks import provider_janitor
from tests.providers.support import balance, fund, ledger_ok
from tests.worker import wait_until
from webhooks.models import InboundWebhook

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SELLER_EMAIL = "seller@airtm.test"


def status_of(model, public_id):
    return model.objects.get(public_id=public_id).status


def all_webhooks_handled():
    return not InboundWebhook.objects.filter(
        status__in=[InboundWebhook.Status.RECEIVED, InboundWebhook.Status.FAILED]
    ).exists()


@pytest.fixture
def linked_seller(api, seller, airtm):
    response = api.post(
        f"/api/v1/users/{seller.public_id}/airtm/link", {"email": SELLER_EMAIL}, format="json"
    )
    assert response.status_code == 200, response.json()
    fund(seller, "300.00")
    return seller


def test_topup_confirmed_on_the_checkout_page_is_credited_once_despite_duplicates_and_reordering(
    api, buyer, airtm_live
):
    airtm = airtm_live
    airtm.webhook_fault("duplicate", times=2)
    airtm.webhook_fault("duplicate_new_id", times=1, event_type="payin.confirmed")
    airtm.webhook_fault("out_of_order", times=1, event_type="payin.created")
    topup = api.post(
        "/api/v1/topups",
        {"user_id": buyer.public_id, "amount": "500.00", "currency": "USD"},
        format="json",
    ).json()

    redirect = airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")
    airtm.flush()

    assert redirect.startswith(f"{airtm.public_base_url}/api/v1/topups/{topup['id']}/callback")
    wait_until(lambda: status_of(TopUp, topup["id"]) == TopUp.Status.SUCCEEDED)
    wait_until(all_webhooks_handled)
    assert InboundWebhook.objects.filter(event_type="payin.confirmed").count() >= 2
    assert sum(w.deliveries for w in InboundWebhook.objects.all()) > InboundWebhook.objects.count()
    assert balance(buyer) == {"available": "500.00"}
    assert JournalEntry.objects.filter(reference=f"topup:{topup['id']}:succeeded").count() == 1
    assert ledger_ok()


def test_timeout_after_success_on_payout_creation_pays_exactly_once(api, linked_seller, airtm_live):
    airtm = airtm_live
    airtm.api_fault("POST", r"/v2/payouts$", "timeout_after_success", times=1)

    response = api.post(
        "/api/v1/withdrawals",
        {"user_id": linked_seller.public_id, "amount": "120.00", "commit": True},
        format="json",
    )
    airtm.flush()

    assert response.status_code == 201, response.json()
    wd = response.json()["id"]
    wait_until(lambda: status_of(Withdrawal, wd) == Withdrawal.Status.COMPLETED)
    assert airtm.payout_count(wd) == 1
    assert balance(linked_seller) == {"available": "180.00", "withdrawal_pending": "0.00"}
    assert ledger_ok()


def test_pending_user_action_then_completed_by_webhook(api, linked_seller, airtm_live):
    airtm = airtm_live
    airtm.payout_outcome(SELLER_EMAIL, "PENDING")
    wd = api.post(
        "/api/v1/withdrawals",
        {"user_id": linked_seller.public_id, "amount": "50.00", "commit": True},
        format="json",
    ).json()
    assert wd["status"] == "WITHDRAWAL_PENDING_USER_ACTION"

    airtm.complete_user_action(SELLER_EMAIL)
    airtm.flush()

    wait_until(lambda: status_of(Withdrawal, wd["id"]) == Withdrawal.Status.COMPLETED)
    assert balance(linked_seller) == {"available": "250.00", "withdrawal_pending": "0.00"}
    assert ledger_ok()


def test_failed_payout_returns_the_funds_once(api, linked_seller, airtm_live):
    airtm = airtm_live
    airtm.payout_outcome(SELLER_EMAIL, "FAILED", reason_code="415073")
    airtm.webhook_fault("duplicate", times=3)
    wd = api.post(
        "/api/v1/withdrawals",
        {"user_id": linked_seller.public_id, "amount": "75.00"},
        format="json",
    ).json()

    committed = api.post(f"/api/v1/withdrawals/{wd['id']}/commit")
    airtm.flush()

    assert committed.status_code == 200
    wait_until(lambda: status_of(Withdrawal, wd["id"]) == Withdrawal.Status.FAILED)
    wait_until(all_webhooks_handled)
    assert balance(linked_seller) == {"available": "300.00", "withdrawal_pending": "0.00"}
    assert JournalEntry.objects.filter(reference=f"withdrawal:{wd['id']}:returned").count() == 1
    assert ledger_ok()


def test_the_janitor_repairs_a_dropped_webhook(api, buyer, airtm_live, settings):
    airtm = airtm_live
    airtm.webhook_fault("drop", times=10)
    topup = api.post(
        "/api/v1/topups",
        {"user_id": buyer.public_id, "amount": "42.50", "currency": "USD"},
        format="json",
    ).json()
    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")
    airtm.flush()
    assert status_of(TopUp, topup["id"]) == TopUp.Status.AWAITING_USER_CONFIRMATION

    provider_janitor.delay()  # the worker runs with PROVIDER_JANITOR_STALE_SECONDS=0

    wait_until(lambda: status_of(TopUp, topup["id"]) == TopUp.Status.SUCCEEDED)
    assert balance(buyer) == {"available": "42.50"}
    assert ledger_ok()


def test_bad_signatures_are_refused_and_nothing_is_processed(api, buyer, airtm_live):
    airtm = airtm_live
    airtm.webhook_fault("bad_signature", times=100)
    topup = api.post(
        "/api/v1/topups",
        {"user_id": buyer.public_id, "amount": "10.00", "currency": "USD"},
        format="json",
    ).json()
    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")
    airtm.flush()

    attempts = airtm.delivery_statuses()
    assert attempts
    assert set(attempts) == {401}
    assert not InboundWebhook.objects.exists()
    assert status_of(TopUp, topup["id"]) == TopUp.Status.AWAITING_USER_CONFIRMATION
    assert balance(buyer) == {}
