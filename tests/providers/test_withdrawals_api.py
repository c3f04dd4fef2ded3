"""Withdrawals and Airtm links over the API against the Airtm simulator (PostgreSQL)."""

import pytest

from ledger.models import JournalEntry
from orchestrator.models import Event
from providers.models import AirtmLink, Withdrawal
from providers.services.janitor import provider_janitor
from tests.providers.support import balance, fund, ledger_ok, quiet

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

SELLER_EMAIL = "seller@airtm.test"


@pytest.fixture
def linked(api, seller, airtm):
    response = api.post(
        f"/api/v1/users/{seller.public_id}/airtm/link", {"email": SELLER_EMAIL}, format="json"
    )
    assert response.status_code == 200, response.json()
    fund(seller, "300.00")
    return seller


def withdraw(api, user, amount="100.00", **extra):
    body = {"user_id": user.public_id, "amount": amount, **extra}
    return api.post("/api/v1/withdrawals", body, format="json")


def test_link_looks_the_account_up_at_airtm(api, seller, airtm):
    response = api.post(
        f"/api/v1/users/{seller.public_id}/airtm/link", {"email": SELLER_EMAIL}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["email"] == SELLER_EMAIL
    assert response.json()["verified"] is True
    assert AirtmLink.objects.get(user=seller).airtm_user_id == response.json()["airtm_user_id"]
    assert Event.objects.filter(type="user.airtm_linked", aggregate_id=seller.public_id).exists()


def test_linking_an_unknown_airtm_account_is_422(api, seller, airtm):
    response = api.post(
        f"/api/v1/users/{seller.public_id}/airtm/link", {"email": "ghost@airtm.test"}, format="json"
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "AIRTM_USER_INVALID"
    assert not AirtmLink.objects.exists()


def test_withdrawal_without_a_linked_account_is_422(api, seller, airtm):
    fund(seller, "300.00")

    response = withdraw(api, seller)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "AIRTM_USER_NOT_LINKED"
    assert balance(seller) == {"available": "300.00"}


def test_withdrawal_above_available_is_422_and_writes_nothing(api, linked, airtm):
    response = withdraw(api, linked, amount="300.01")

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert error["details"]["available"] == "300.00"
    assert error["details"]["requested"] == "300.01"
    assert not Withdrawal.objects.exists()
    assert airtm.payout_count() == 0


def test_two_step_withdrawal_holds_then_pays_out_on_commit(api, linked, airtm, deliver_webhooks):
    created = withdraw(api, linked)

    assert created.status_code == 201, created.json()
    wd = created.json()
    assert wd["status"] == "WITHDRAWAL_CREATED"
    assert wd["committed"] is False
    assert wd["destination"] == {"type": "airtm", "email": SELLER_EMAIL}
    assert balance(linked) == {"available": "200.00", "withdrawal_pending": "100.00"}

    committed = api.post(f"/api/v1/withdrawals/{wd['id']}/commit")
    deliver_webhooks()

    assert committed.status_code == 200
    assert committed.json()["status"] in ("WITHDRAWAL_COMMITTED", "WITHDRAWAL_COMPLETED")
    final = api.post(f"/api/v1/withdrawals/{wd['id']}/refresh").json()
    assert final["status"] == "WITHDRAWAL_COMPLETED"
    assert balance(linked) == {"available": "200.00", "withdrawal_pending": "0.00"}
    assert airtm.payout_count(wd["id"]) == 1
    assert ledger_ok()


def test_committing_twice_is_409(api, linked, airtm):
    wd = withdraw(api, linked).json()
    api.post(f"/api/v1/withdrawals/{wd['id']}/commit")

    again = api.post(f"/api/v1/withdrawals/{wd['id']}/commit")

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "INVALID_STATE"


def test_one_step_withdrawal_with_commit(api, linked, airtm):
    response = withdraw(api, linked, commit=True)

    assert response.status_code == 201
    wd = api.post(f"/api/v1/withdrawals/{response.json()['id']}/refresh").json()
    assert wd["status"] == "WITHDRAWAL_COMPLETED"
    assert wd["committed"] is True
    assert JournalEntry.objects.filter(reference=f"withdrawal:{wd['id']}:completed").count() == 1


def test_pending_user_action_then_completed(api, linked, airtm):
    airtm.payout_outcome(SELLER_EMAIL, "PENDING")
    wd = withdraw(api, linked, commit=True).json()

    pending = api.post(f"/api/v1/withdrawals/{wd['id']}/refresh").json()
    airtm.complete_user_action(SELLER_EMAIL)
    done = api.post(f"/api/v1/withdrawals/{wd['id']}/refresh").json()

    assert pending["status"] == "WITHDRAWAL_PENDING_USER_ACTION"
    assert balance(linked)["withdrawal_pending"] == "0.00"
    assert done["status"] == "WITHDRAWAL_COMPLETED"
    events = Event.objects.filter(aggregate_id=wd["id"]).values_list("type", flat=True)
    assert "withdrawal.pending_user_action" in events
    assert "withdrawal.completed" in events


def test_a_failed_payout_returns_the_funds_once(api, linked, airtm, deliver_webhooks):
    airtm.payout_outcome(SELLER_EMAIL, "FAILED", reason_code="415073")
    airtm.webhook_fault("duplicate", times=3)
    wd = withdraw(api, linked, commit=True).json()

    deliver_webhooks()
    api.post(f"/api/v1/withdrawals/{wd['id']}/refresh")
    final = api.get(f"/api/v1/withdrawals/{wd['id']}").json()

    assert final["status"] == "WITHDRAWAL_FAILED"
    assert final["reason_code"] == "415073"
    assert balance(linked) == {"available": "300.00", "withdrawal_pending": "0.00"}
    assert JournalEntry.objects.filter(reference=f"withdrawal:{wd['id']}:returned").count() == 1
    assert ledger_ok()


def test_cancel_a_created_withdrawal_cancels_the_payout_and_returns_funds(api, linked, airtm):
    wd = withdraw(api, linked).json()

    canceled = api.post(f"/api/v1/withdrawals/{wd['id']}/cancel")

    assert canceled.status_code == 200
    assert canceled.json()["status"] == "WITHDRAWAL_CANCELED"
    assert airtm.payout(wd["airtm_payout_id"])["status"] == "CANCELED"
    assert balance(linked) == {"available": "300.00", "withdrawal_pending": "0.00"}


def test_cancel_of_a_completed_withdrawal_is_409(api, linked, airtm):
    wd = withdraw(api, linked, commit=True).json()
    api.post(f"/api/v1/withdrawals/{wd['id']}/refresh")

    response = api.post(f"/api/v1/withdrawals/{wd['id']}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["details"]["current_state"] == "WITHDRAWAL_COMPLETED"


def test_timeout_after_airtm_created_the_payout_pays_exactly_once(api, linked, airtm):
    airtm.api_fault("POST", r"/v2/payouts$", "timeout_after_success", times=1)

    response = withdraw(api, linked, commit=True)

    assert response.status_code == 201
    wd = api.post(f"/api/v1/withdrawals/{response.json()['id']}/refresh").json()
    assert wd["status"] == "WITHDRAWAL_COMPLETED"
    assert airtm.payout_count(wd["id"]) == 1
    assert balance(linked) == {"available": "200.00", "withdrawal_pending": "0.00"}


def test_airtm_down_keeps_the_funds_held_and_the_janitor_pays_later(api, linked, airtm, settings):
    airtm.api_fault("POST", r"/v2/payouts$", "503", times=1)
    airtm.api_fault("GET", r"/v2/payouts/by-code/", "503", times=6)

    response = withdraw(api, linked, commit=True)

    assert response.status_code == 202
    assert response.json()["status"] == "WITHDRAWAL_CREATED"
    assert balance(linked) == {"available": "200.00", "withdrawal_pending": "100.00"}
    airtm.clear_faults()
    settings.PROVIDER_JANITOR_STALE_SECONDS = 0
    quiet(Withdrawal, response.json()["id"])
    provider_janitor()
    wd = Withdrawal.objects.get(public_id=response.json()["id"])
    assert wd.status == Withdrawal.Status.COMPLETED
    assert airtm.payout_count(wd.public_id) == 1
    assert balance(linked) == {"available": "200.00", "withdrawal_pending": "0.00"}


def test_a_payout_airtm_refuses_fails_the_withdrawal_and_returns_funds(api, linked, airtm):
    airtm.sim.set_enterprise(max_payout_amount="50.00")

    response = withdraw(api, linked, commit=True)

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "PROVIDER_ERROR"
    details = response.json()["error"]["details"]
    assert details["reason_code"] == "415057"
    wd = Withdrawal.objects.get(public_id=details["withdrawal_id"])
    assert wd.status == Withdrawal.Status.FAILED
    assert balance(linked) == {"available": "300.00", "withdrawal_pending": "0.00"}


def test_destination_other_than_the_linked_account_is_422(api, linked, airtm):
    response = withdraw(api, linked, destination_email="someone@else.test")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "WITHDRAWAL_DESTINATION_INVALID"


def test_non_usd_withdrawals_are_refused(api, linked, airtm):
    response = withdraw(api, linked, amount="1.0000000", currency="USDC")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_CURRENCY"


def test_another_marketplace_cannot_see_or_touch_withdrawals(
    api, linked, make_client, other_marketplace, airtm
):
    wd = withdraw(api, linked).json()
    other = make_client(other_marketplace)

    assert other.get(f"/api/v1/withdrawals/{wd['id']}").status_code == 404
    assert other.post(f"/api/v1/withdrawals/{wd['id']}/commit").status_code == 404
    assert other.post(f"/api/v1/withdrawals/{wd['id']}/cancel").status_code == 404
    assert other.get("/api/v1/withdrawals").json()["data"] == []
