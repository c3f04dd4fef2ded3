"""Orders before the chain over the API: create, reserve, cancel, reads, and bad input."""

import pytest

from escrow.models import Milestone, Order
from ledger.models import Hold, JournalEntry
from orchestrator.models import AuditLog, Event
from tests.providers.support import balance, fund, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def create(api, buyer, seller, amount="120.00", **extra):
    body = {
        "buyer_id": buyer.public_id,
        "seller_id": seller.public_id,
        "amount": amount,
        "currency": "USD",
        "title": "Logo design",
        **extra,
    }
    return api.post("/api/v1/orders", body, format="json")


def error(response):
    return response.json()["error"]


def test_create_answers_the_order_with_one_default_milestone(api, buyer, seller):
    response = create(
        api,
        buyer,
        seller,
        description="Three colours",
        client_order_ref="cart-1",
        metadata={"a": 1},
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"].startswith("ord_")
    assert body["status"] == "ORDER_CREATED"
    assert (body["buyer_id"], body["seller_id"]) == (buyer.public_id, seller.public_id)
    assert (body["amount"], body["currency"]) == ("120.00", "USD")
    assert body["client_order_ref"] == "cart-1"
    assert body["escrow"] is None
    assert body["dispute"] is None
    assert [(m["milestone_ref"], m["amount"], m["status"]) for m in body["milestones"]] == [
        ("default", "120.00", "PENDING")
    ]
    assert Event.objects.filter(type="order.created", aggregate_id=body["id"]).count() == 1
    assert AuditLog.objects.filter(action="order.created", object_id=body["id"]).count() == 1


def test_create_with_milestones_that_add_up(api, buyer, seller):
    milestones = [
        {"milestone_ref": "sketch", "title": "Sketch", "amount": "40.00"},
        {"milestone_ref": "final", "title": "Final files", "amount": "80.00"},
    ]

    response = create(api, buyer, seller, milestones=milestones)

    assert response.status_code == 201, response.json()
    assert [
        (m["milestone_ref"], m["index"], m["amount"]) for m in response.json()["milestones"]
    ] == [
        ("sketch", 0, "40.00"),
        ("final", 1, "80.00"),
    ]


def test_milestones_that_do_not_add_up_are_refused(api, buyer, seller):
    milestones = [
        {"milestone_ref": "a", "title": "A", "amount": "40.00"},
        {"milestone_ref": "b", "title": "B", "amount": "80.01"},
    ]

    response = create(api, buyer, seller, milestones=milestones)

    assert response.status_code == 400
    assert error(response)["code"] == "INVALID_AMOUNT"
    assert error(response)["details"]["milestones_total"] == "120.01"
    assert not Order.objects.exists()


def test_duplicate_milestone_refs_are_refused(api, buyer, seller):
    milestones = [
        {"milestone_ref": "a", "title": "A", "amount": "60.00"},
        {"milestone_ref": "a", "title": "B", "amount": "60.00"},
    ]

    response = create(api, buyer, seller, milestones=milestones)

    assert response.status_code == 400
    assert error(response)["code"] == "VALIDATION_ERROR"
    assert not Milestone.objects.exists()


def test_the_buyer_cannot_be_the_seller(api, buyer):
    response = create(api, buyer, buyer)

    assert response.status_code == 400
    assert error(response)["code"] == "VALIDATION_ERROR"
    assert "seller_id" in error(response)["details"]["fields"]
    assert not Order.objects.exists()


@pytest.mark.parametrize("who", ["buyer", "seller"])
def test_unknown_users_are_404(api, buyer, seller, who):
    ids = {"buyer": buyer, "seller": seller}
    body = {
        "buyer_id": "usr_nobody" if who == "buyer" else buyer.public_id,
        "seller_id": "usr_nobody" if who == "seller" else seller.public_id,
        "amount": "10.00",
        "title": "x",
    }
    assert ids

    response = api.post("/api/v1/orders", body, format="json")

    assert response.status_code == 404
    assert error(response)["code"] == "USER_NOT_FOUND"


def test_another_marketplaces_user_is_unknown(api, buyer, make_user, other_marketplace):
    stranger = make_user(other_marketplace)

    response = create(api, buyer, stranger)

    assert response.status_code == 404
    assert error(response)["code"] == "USER_NOT_FOUND"


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        ("12.345", "USD", "INVALID_AMOUNT_FORMAT"),
        (12, "USD", "INVALID_AMOUNT_FORMAT"),
        ("0.00", "USD", "INVALID_AMOUNT_FORMAT"),
        ("-5.00", "USD", "INVALID_AMOUNT_FORMAT"),
        ("10.00", "USDC", "INVALID_CURRENCY"),
        ("10.00", "EUR", "INVALID_CURRENCY"),
    ],
)
def test_bad_amounts_and_currencies_are_400(api, buyer, seller, amount, currency, code):
    response = create(api, buyer, seller, amount=amount, currency=currency)

    assert response.status_code == 400
    assert error(response)["code"] == code


def test_unknown_fields_are_refused(api, buyer, seller):
    response = create(api, buyer, seller, buyerId=buyer.public_id)

    assert response.status_code == 400
    assert "buyerId" in error(response)["details"]["fields"]


def test_a_client_order_ref_is_used_once_per_marketplace(
    api, make_client, buyer, seller, other_marketplace, make_user
):
    first = create(api, buyer, seller, client_order_ref="cart-7")
    again = create(api, buyer, seller, client_order_ref="cart-7")
    elsewhere = create(
        make_client(other_marketplace),
        make_user(other_marketplace),
        make_user(other_marketplace),
        client_order_ref="cart-7",
    )

    assert (first.status_code, again.status_code, elsewhere.status_code) == (201, 409, 201)
    assert error(again)["code"] == "CLIENT_ORDER_REF_EXISTS"
    assert error(again)["details"]["order_id"] == first.json()["id"]


def test_reserve_holds_the_buyers_funds(api, buyer, seller):
    fund(buyer, "500.00")
    order = create(api, buyer, seller).json()

    response = api.post(f"/api/v1/orders/{order['id']}/reserve")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "FUNDS_RESERVED"
    assert balance(buyer) == {"available": "380.00", "reserved": "120.00"}
    assert Hold.objects.get(reference=f"order:{order['id']}").status == Hold.Status.ACTIVE
    types = list(
        Event.objects.filter(aggregate_id__in=[order["id"], buyer.public_id]).values_list(
            "type", flat=True
        )
    )
    assert "order.funds_reserved" in types
    assert "balance.reserved" in types
    assert ledger_ok()


def test_reserve_without_funds_is_422_and_changes_nothing(api, buyer, seller):
    fund(buyer, "100.00")
    order = create(api, buyer, seller).json()

    response = api.post(f"/api/v1/orders/{order['id']}/reserve")

    assert response.status_code == 422
    assert error(response)["code"] == "INSUFFICIENT_FUNDS"
    assert Order.objects.get(public_id=order["id"]).status == Order.Status.CREATED
    assert balance(buyer) == {"available": "100.00"}  # the reserved account was rolled back too
    assert not Hold.objects.exists()


def test_reserving_twice_is_409_naming_the_current_state(api, buyer, seller):
    fund(buyer, "500.00")
    order = create(api, buyer, seller).json()
    api.post(f"/api/v1/orders/{order['id']}/reserve")

    response = api.post(f"/api/v1/orders/{order['id']}/reserve")

    assert response.status_code == 409
    assert error(response)["code"] == "INVALID_STATE"
    assert error(response)["details"]["current_state"] == "FUNDS_RESERVED"
    assert balance(buyer) == {"available": "380.00", "reserved": "120.00"}


def test_cancel_returns_the_reservation_once(api, buyer, seller):
    fund(buyer, "500.00")
    order = create(api, buyer, seller).json()
    api.post(f"/api/v1/orders/{order['id']}/reserve")

    canceled = api.post(
        f"/api/v1/orders/{order['id']}/cancel", {"reason": "changed my mind"}, format="json"
    )
    again = api.post(f"/api/v1/orders/{order['id']}/cancel")
    reserve = api.post(f"/api/v1/orders/{order['id']}/reserve")

    assert canceled.status_code == 200, canceled.json()
    assert (canceled.json()["status"], canceled.json()["outcome"]) == ("CLOSED", "CANCELED")
    assert canceled.json()["cancel_reason"] == "changed my mind"
    assert (again.status_code, error(again)["details"]["current_state"]) == (409, "CLOSED")
    assert (reserve.status_code, error(reserve)["code"]) == (409, "INVALID_STATE")
    assert balance(buyer) == {"available": "500.00", "reserved": "0.00"}
    assert JournalEntry.objects.filter(reference=f"order:{order['id']}:cancel").count() == 1
    assert Event.objects.filter(type="order.canceled", aggregate_id=order["id"]).count() == 1
    assert Event.objects.filter(type="balance.released", aggregate_id=buyer.public_id).count() == 1
    assert ledger_ok()


def test_cancel_before_reserving_moves_no_money(api, buyer, seller):
    order = create(api, buyer, seller).json()

    response = api.post(f"/api/v1/orders/{order['id']}/cancel")

    assert response.json()["status"] == "CLOSED"
    assert not JournalEntry.objects.exists()


def test_get_and_list_with_filters(api, buyer, seller, make_user, marketplace):
    other_buyer = make_user(marketplace)
    fund(buyer, "500.00")
    first = create(api, buyer, seller).json()
    second = create(api, other_buyer, seller, amount="5.00").json()
    api.post(f"/api/v1/orders/{first['id']}/reserve")

    one = api.get(f"/api/v1/orders/{first['id']}")
    by_buyer = api.get("/api/v1/orders", {"buyer_id": buyer.public_id})
    by_seller = api.get("/api/v1/orders", {"seller_id": seller.public_id})
    by_status = api.get("/api/v1/orders", {"status": "ORDER_CREATED"})
    paged = api.get("/api/v1/orders", {"limit": 1})
    milestones = api.get(f"/api/v1/orders/{first['id']}/milestones")

    assert one.status_code == 200
    assert one.json()["status"] == "FUNDS_RESERVED"
    assert [item["title"] for item in one.json()["timeline"] if item["kind"] == "ledger"] == [
        f"hold:order:{first['id']}:place"
    ]
    assert [o["id"] for o in by_buyer.json()["data"]] == [first["id"]]
    assert [o["id"] for o in by_seller.json()["data"]] == [second["id"], first["id"]]
    assert [o["id"] for o in by_status.json()["data"]] == [second["id"]]
    assert paged.json()["pagination"]["has_more"] is True
    assert [m["milestone_ref"] for m in milestones.json()["data"]] == ["default"]


def test_an_invalid_status_filter_is_400(api):
    response = api.get("/api/v1/orders", {"status": "NOPE"})

    assert response.status_code == 400
