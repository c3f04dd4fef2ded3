from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.services import transfer_post
from orchestrator.models import AuditLog
from tests.ledger.conftest import available, fund, usd

pytestmark = pytest.mark.django_db


def credit(client, user, body):
    return client.post(f"/api/v1/users/{user.public_id}/balance/credit", body, format="json")


def test_balance_shows_each_account_kind_per_currency(api, buyer):
    fund(buyer, usd("500"))

    response = api.get(f"/api/v1/users/{buyer.public_id}/balance")

    assert response.status_code == 200
    assert response.json() == {
        "user_id": buyer.public_id,
        "balances": [
            {
                "currency": "USD",
                "available": "500.00",
                "reserved": "0.00",
                "withdrawal_pending": "0.00",
                "total": "500.00",
            }
        ],
    }


def test_balance_of_a_new_user_is_zero_usd(api, buyer):
    response = api.get(f"/api/v1/users/{buyer.public_id}/balance")

    assert response.json()["balances"][0]["available"] == "0.00"


def test_transactions_are_a_paginated_newest_first_statement(api, buyer, seller):
    fund(buyer, usd("100"))
    for n in range(3):
        transfer_post(
            source=available(buyer),
            destination=available(seller),
            amount=usd("1"),
            reference=f"t{n}",
            kind="order.release",
        )

    first = api.get(f"/api/v1/users/{buyer.public_id}/transactions?limit=2")
    cursor = first.json()["pagination"]["next_cursor"]
    second = api.get(f"/api/v1/users/{buyer.public_id}/transactions?limit=2&cursor={cursor}")

    assert [line["reference"] for line in first.json()["data"]] == ["t2", "t1"]
    assert first.json()["pagination"]["has_more"] is True
    assert [line["type"] for line in second.json()["data"]] == ["order.release", "topup"]
    assert second.json()["pagination"] == {"has_more": False, "next_cursor": None}
    assert first.json()["data"][0] | {"id": None, "created_at": None} == {
        "id": None,
        "type": "order.release",
        "reference": "t2",
        "memo": "",
        "account": "available",
        "amount": "1.00",
        "currency": "USD",
        "direction": "debit",
        "created_at": None,
    }


def test_transactions_filter_by_type_and_date(api, buyer, seller):
    fund(buyer, usd("100"))
    transfer_post(
        source=available(buyer),
        destination=available(seller),
        amount=usd("1"),
        reference="r",
        kind="order.release",
    )
    url = f"/api/v1/users/{buyer.public_id}/transactions"

    by_type = api.get(url, {"type": "topup"})
    future = api.get(url, {"created_after": (timezone.now() + timedelta(hours=1)).isoformat()})
    bad = api.get(url, {"colour": "red"})

    assert [line["type"] for line in by_type.json()["data"]] == ["topup"]
    assert future.json()["data"] == []
    assert bad.status_code == 400
    assert "colour" in bad.json()["error"]["details"]["fields"]


def test_credit_needs_admin_scope_and_a_reason_and_is_audited(make_client, marketplace, buyer):
    admin = make_client(marketplace, ["admin"])
    writer = make_client(marketplace, ["read", "write"])

    refused = credit(writer, buyer, {"amount": "10.00", "currency": "USD", "reason": "goodwill"})
    no_reason = credit(admin, buyer, {"amount": "10.00", "currency": "USD"})
    done = credit(admin, buyer, {"amount": "10.00", "currency": "USD", "reason": "goodwill"})

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert no_reason.status_code == 400
    assert "reason" in no_reason.json()["error"]["details"]["fields"]
    assert done.status_code == 200
    assert done.json()["balances"][0]["available"] == "10.00"
    audit = AuditLog.objects.get(action="balance.credit")
    assert (audit.reason, audit.actor_kind, audit.object_id) == (
        "goodwill",
        "api_key",
        done.json()["entry_id"],
    )
    assert audit.after is not None
    assert audit.after["available"] == "10.00"


def test_debit_beyond_available_is_insufficient_funds_with_details(api, buyer):
    fund(buyer, usd("3.00"))

    response = api.post(
        f"/api/v1/users/{buyer.public_id}/balance/debit",
        {"amount": "3.01", "currency": "USD", "reason": "chargeback"},
        format="json",
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert (error["details"]["available"], error["details"]["requested"]) == ("3.00", "3.01")
    assert not AuditLog.objects.filter(action="balance.debit").exists()


@pytest.mark.parametrize(
    "amount", [10.5, 10, "NaN", "1e3", "-1.00", "0", "0.00", "1.001", None, ["1"]]
)
def test_adjustment_amounts_must_be_positive_decimal_strings(api, buyer, amount):
    response = credit(api, buyer, {"amount": amount, "currency": "USD", "reason": "x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_AMOUNT_FORMAT"


def test_adjustment_with_an_unknown_currency_is_refused(api, buyer):
    response = credit(api, buyer, {"amount": "1.00", "currency": "EUR", "reason": "x"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_CURRENCY"


def test_adjustment_reference_makes_a_retry_harmless(api, buyer):
    body = {"amount": "5.00", "currency": "USD", "reason": "x", "reference": "ticket-42"}

    first = credit(api, buyer, body)
    again = credit(api, buyer, body)

    assert again.json()["entry_id"] == first.json()["entry_id"]
    assert again.json()["balances"][0]["available"] == "5.00"
    assert AuditLog.objects.filter(action="balance.credit").count() == 1


@pytest.mark.parametrize("suffix", ["balance", "transactions"])
def test_another_marketplaces_user_is_not_found(make_client, other_marketplace, buyer, suffix):
    outsider = make_client(other_marketplace)

    response = outsider.get(f"/api/v1/users/{buyer.public_id}/{suffix}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "USER_NOT_FOUND"


def test_another_marketplaces_user_cannot_be_credited(make_client, other_marketplace, buyer):
    outsider = make_client(other_marketplace)

    response = credit(outsider, buyer, {"amount": "1.00", "currency": "USD", "reason": "x"})

    assert response.status_code == 404
    assert not AuditLog.objects.filter(action="balance.credit").exists()
