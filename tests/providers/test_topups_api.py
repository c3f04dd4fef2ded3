"""Top-ups over the API against the Airtm simulator (real HTTP, eager tasks, PostgreSQL)."""

from decimal import Decimal

import pytest
import responses

from ledger.models import JournalEntry
from orchestrator.models import AuditLog, Event
from providers.models import ProviderCall, TopUp
from tests.providers.support import balance, ledger_ok, quiet

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def create(api, user, amount="500.00", **extra):
    body = {"user_id": user.public_id, "amount": amount, "currency": "USD", **extra}
    return api.post("/api/v1/topups", body, format="json")


def test_create_returns_the_airtm_checkout_page_and_awaits_the_payer(api, buyer, airtm):
    response = create(api, buyer, description="Wallet top-up")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"].startswith("topup_")
    assert body["status"] == "TOPUP_AWAITING_USER_CONFIRMATION"
    assert body["amount"] == "500.00"
    assert body["airtm_payin_id"]
    assert body["confirmation_uri"] == f"{airtm.url}/airtm/payin/{body['airtm_payin_id']}"
    payin = airtm.payin(body["airtm_payin_id"])
    assert payin["code"] == body["id"]  # our deterministic code
    assert Decimal(str(payin["amount"])) == Decimal("500.00")
    assert balance(buyer) == {}
    types = list(Event.objects.filter(aggregate_id=body["id"]).values_list("type", flat=True))
    assert types == ["topup.created", "topup.confirmation_required"]
    assert ProviderCall.objects.filter(reference=body["id"], operation="create_payin").exists()


def test_confirmed_through_the_checkout_page_credits_once_despite_duplicate_webhooks(
    api, buyer, airtm, deliver_webhooks
):
    topup = create(api, buyer).json()
    airtm.webhook_fault("duplicate", times=5)

    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")
    delivered = deliver_webhooks()

    assert {m["type"] for m in delivered} >= {"payin.confirmed"}
    assert len([m for m in delivered if m["type"] == "payin.confirmed"]) >= 2
    assert api.get(f"/api/v1/topups/{topup['id']}").json()["status"] == "TOPUP_SUCCEEDED"
    assert balance(buyer) == {"available": "500.00"}
    assert JournalEntry.objects.filter(reference=f"topup:{topup['id']}:succeeded").count() == 1
    assert Event.objects.filter(aggregate_id=topup["id"], type="topup.succeeded").count() == 1
    assert ledger_ok()


def test_a_late_created_webhook_after_confirmation_moves_nothing_backwards(
    api, buyer, airtm, deliver_webhooks
):
    airtm.webhook_fault("out_of_order", times=1, event_type="payin.created")
    topup = create(api, buyer).json()

    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")
    delivered = deliver_webhooks()

    assert [m["type"] for m in delivered][-1] == "payin.created"
    assert api.get(f"/api/v1/topups/{topup['id']}").json()["status"] == "TOPUP_SUCCEEDED"
    assert balance(buyer) == {"available": "500.00"}


def test_refresh_sees_the_payment_without_any_webhook(api, buyer, airtm):
    topup = create(api, buyer).json()
    airtm.webhook_fault("drop", times=10)
    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")

    refreshed = api.post(f"/api/v1/topups/{topup['id']}/refresh")
    again = api.post(f"/api/v1/topups/{topup['id']}/refresh")

    assert refreshed.json()["status"] == "TOPUP_SUCCEEDED"
    assert again.json()["status"] == "TOPUP_SUCCEEDED"
    assert balance(buyer) == {"available": "500.00"}


def test_payer_without_enough_money_fails_the_topup_and_credits_nothing(api, buyer, airtm):
    topup = create(api, buyer, amount="5000.00").json()

    airtm.pay(topup["airtm_payin_id"], "poor@airtm.test")
    refreshed = api.post(f"/api/v1/topups/{topup['id']}/refresh").json()

    assert refreshed["status"] == "TOPUP_FAILED"
    assert refreshed["failure_reason"]
    assert balance(buyer) == {}


def test_cancel_before_payment_cancels_the_payin_at_airtm(api, buyer, airtm):
    topup = create(api, buyer).json()

    canceled = api.post(f"/api/v1/topups/{topup['id']}/cancel")

    assert canceled.status_code == 200
    assert canceled.json()["status"] == "TOPUP_CANCELED"
    assert canceled.json()["canceled_by"] == "user"
    assert airtm.payin(topup["airtm_payin_id"])["status"] == "CANCELED"
    audit = AuditLog.objects.filter(object_id=topup["id"], action="topup.status_changed").last()
    assert audit is not None
    assert audit.after is not None
    assert audit.after["status"] == "TOPUP_CANCELED"


def test_cancel_after_the_payer_paid_is_a_conflict_naming_the_new_state(api, buyer, airtm):
    topup = create(api, buyer).json()
    airtm.webhook_fault("drop", times=10)
    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")

    response = api.post(f"/api/v1/topups/{topup['id']}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "INVALID_STATE"
    assert response.json()["error"]["details"]["current_state"] == "TOPUP_SUCCEEDED"
    assert balance(buyer) == {"available": "500.00"}


def test_the_callback_redirects_the_payer_to_the_marketplace(api, client, buyer, airtm):
    topup = create(api, buyer, return_url="https://shop.example/done").json()
    airtm.pay(topup["airtm_payin_id"], "payer@airtm.test")

    response = client.get(f"/api/v1/topups/{topup['id']}/callback?status=confirmed")

    assert response.status_code == 302
    assert response["Location"] == (
        f"https://shop.example/done?topup_id={topup['id']}&status=TOPUP_SUCCEEDED"
    )
    assert balance(buyer) == {"available": "500.00"}


def test_callback_of_an_unknown_topup_is_404(client):
    response = client.get("/api/v1/topups/topup_nope/callback")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "TOPUP_NOT_FOUND"


def test_airtm_refusing_the_payin_fails_the_topup_with_a_provider_error(api, buyer, airtm):
    refusal = {"code": "415053", "message": "US users cannot make payins", "data": {}}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.add(responses.POST, f"{airtm.url}/airtm/v2/payins", json=refusal, status=422)
        response = create(api, buyer)

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "PROVIDER_ERROR"
    assert error["details"]["reason_code"] == "415053"
    topup = TopUp.objects.get(public_id=error["details"]["topup_id"])
    assert topup.status == TopUp.Status.FAILED
    assert "US users" in topup.failure_reason


def test_airtm_down_leaves_the_topup_waiting_and_the_janitor_finishes_it(
    api, buyer, airtm, settings
):
    from providers.services.janitor import provider_janitor

    airtm.api_fault("POST", r"/v2/payins$", "503", times=3)
    airtm.api_fault("GET", r"/v2/payins/by-code/", "503", times=6)

    response = create(api, buyer)

    assert response.status_code == 202
    assert response.json()["status"] == "TOPUP_CREATED"
    assert response.json()["last_error"].startswith("PROVIDER_")
    airtm.clear_faults()
    settings.PROVIDER_JANITOR_STALE_SECONDS = 0
    quiet(TopUp, response.json()["id"])
    provider_janitor()
    topup = TopUp.objects.get(public_id=response.json()["id"])
    assert topup.status == TopUp.Status.AWAITING_USER_CONFIRMATION
    assert airtm.payin_count(topup.public_id) == 1


def test_timeout_after_airtm_created_the_payin_does_not_create_a_second(api, buyer, airtm):
    airtm.api_fault("POST", r"/v2/payins$", "timeout_after_success", times=1)

    response = create(api, buyer)

    assert response.status_code == 201
    assert airtm.payin_count(response.json()["id"]) == 1


def test_unpaid_topups_expire_through_the_janitor(api, buyer, airtm, settings):
    from django.utils import timezone

    from providers.services.janitor import provider_janitor

    topup = create(api, buyer).json()
    settings.PROVIDER_JANITOR_STALE_SECONDS = 0
    TopUp.objects.filter(public_id=topup["id"]).update(expires_at=timezone.now())
    quiet(TopUp, topup["id"])

    provider_janitor()

    expired = TopUp.objects.get(public_id=topup["id"])
    assert expired.status == TopUp.Status.CANCELED
    assert expired.canceled_by == "timeout"
    assert airtm.payin(topup["airtm_payin_id"])["status"] == "CANCELED"


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (500, "INVALID_AMOUNT_FORMAT"),
        (500.5, "INVALID_AMOUNT_FORMAT"),
        ("5e2", "INVALID_AMOUNT_FORMAT"),
        ("NaN", "INVALID_AMOUNT_FORMAT"),
        ("-1.00", "INVALID_AMOUNT_FORMAT"),
        ("0.00", "INVALID_AMOUNT_FORMAT"),
        ("1.001", "INVALID_AMOUNT_FORMAT"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_written(api, buyer, amount, code):
    response = create(api, buyer, amount=amount)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not TopUp.objects.exists()
    assert not ProviderCall.objects.exists()


def test_unknown_currency_is_refused(api, buyer):
    response = create(api, buyer, currency="EUR")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_CURRENCY"


def test_unknown_fields_are_refused(api, buyer):
    response = create(api, buyer, callback="https://x.example")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "callback" in response.json()["error"]["details"]["fields"]


def test_another_marketplaces_user_and_topups_are_404(
    api, make_client, other_marketplace, make_user, buyer, airtm
):
    stranger = make_user(other_marketplace)
    topup = create(api, buyer).json()
    other = make_client(other_marketplace)

    assert create(api, stranger).status_code == 404
    assert other.get(f"/api/v1/topups/{topup['id']}").status_code == 404
    assert other.post(f"/api/v1/topups/{topup['id']}/cancel").status_code == 404
    assert other.get("/api/v1/topups").json()["data"] == []


def test_list_filters_by_user_and_status(api, buyer, seller, airtm):
    mine = create(api, buyer).json()
    create(api, seller)

    listed = api.get(f"/api/v1/topups?user_id={buyer.public_id}").json()["data"]
    by_status = api.get("/api/v1/topups?status=TOPUP_SUCCEEDED").json()["data"]

    assert [t["id"] for t in listed] == [mine["id"]]
    assert by_status == []
