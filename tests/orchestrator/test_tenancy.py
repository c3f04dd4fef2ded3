"""Tenant isolation: another marketplace's ids answer exactly like ids that do not exist."""

from collections.abc import Callable
from decimal import Decimal

import pytest

from escrow.models import Dispute, Milestone, Order
from orchestrator.models import AuditLog, Marketplace, MarketplaceUser
from providers.models import TopUp, Withdrawal
from tests.orchestrator.support import envelope, protected_routes, route_id
from webhooks.models import WebhookDelivery
from webhooks.outbound import endpoint_create

pytestmark = pytest.mark.django_db


def _stranger_endpoint(make_key, make_user, other: Marketplace) -> str:
    endpoint, _ = endpoint_create(
        marketplace=other, url="https://hooks.example.com/in", event_types=["*"]
    )
    return endpoint.public_id


def _stranger_delivery(make_key, make_user, other: Marketplace) -> str:
    endpoint_id = _stranger_endpoint(make_key, make_user, other)
    make_user(other)  # its user.created event makes a delivery to the endpoint
    return WebhookDelivery.objects.get(endpoint__public_id=endpoint_id).public_id


def _stranger_user(make_key, make_user, other: Marketplace) -> str:
    return make_user(other).public_id


def _stranger_key(make_key, make_user, other: Marketplace) -> str:
    key, _ = make_key(other, ["read"])
    return str(key.public_id)


def _stranger_topup(make_key, make_user, other: Marketplace) -> str:
    user = make_user(other)
    return TopUp.objects.create(marketplace=other, user=user, amount=Decimal("5")).public_id


def _stranger_withdrawal(make_key, make_user, other: Marketplace) -> str:
    user = make_user(other)
    return Withdrawal.objects.create(
        marketplace=other, user=user, amount=Decimal("5"), destination_email="a@b.test"
    ).public_id


def _stranger_order(make_key, make_user, other: Marketplace) -> str:
    order = Order.objects.create(
        marketplace=other,
        buyer=make_user(other),
        seller=make_user(other),
        amount=Decimal("5"),
        title="t",
    )
    Milestone.objects.create(order=order, ref="default", index=0, title="t", amount=order.amount)
    return order.public_id


def _stranger_milestone_ref(make_key, make_user, other: Marketplace) -> str:
    return "default"  # another marketplace's order holds it; the order id decides


def _stranger_dispute(make_key, make_user, other: Marketplace) -> str:
    order = Order.objects.get(public_id=_stranger_order(make_key, make_user, other))
    return Dispute.objects.create(
        marketplace=other, order=order, opened_by="BUYER", reason="OTHER"
    ).public_id


# How to make another marketplace's object for each id parameter a route takes. A new route
# with an id of a new kind fails below until its maker is added here.
STRANGERS: dict[str, Callable[..., str]] = {
    "endpoint_id": _stranger_endpoint,
    "delivery_id": _stranger_delivery,
    "user_id": _stranger_user,
    "key_id": _stranger_key,
    "topup_id": _stranger_topup,
    "withdrawal_id": _stranger_withdrawal,
    "order_id": _stranger_order,
    "ref": _stranger_milestone_ref,
    "dispute_id": _stranger_dispute,
}

ID_CALLS = [
    pytest.param(route, method, id=f"{method}-{route_id(route)}")
    for route in protected_routes()
    if route.params
    for method in route.methods
]


@pytest.mark.parametrize(("route", "method"), ID_CALLS)
def test_every_route_with_an_id_answers_404_for_another_marketplaces_object(
    api, make_key, make_user, other_marketplace, route, method
):
    missing = [name for name in route.params if name not in STRANGERS]
    assert not missing, f"{route.template}: add a maker for {missing} to STRANGERS"
    ids = {name: STRANGERS[name](make_key, make_user, other_marketplace) for name in route.params}
    nonexistent = {name: value[:4] + "doesnotexist000000000000" for name, value in ids.items()}
    audit_before = AuditLog.objects.filter(marketplace=other_marketplace).count()

    foreign = api.generic(method.upper(), route.path(**ids), "{}", content_type="application/json")
    unknown = api.generic(
        method.upper(), route.path(**nonexistent), "{}", content_type="application/json"
    )

    assert foreign.status_code == 404
    assert envelope(foreign)["code"].endswith("NOT_FOUND")
    assert (unknown.status_code, envelope(unknown)["code"]) == (404, envelope(foreign)["code"])
    assert AuditLog.objects.filter(marketplace=other_marketplace).count() == audit_before


def test_user_list_shows_only_the_callers_marketplace(
    api, make_user, marketplace, other_marketplace
):
    mine = make_user(marketplace, external_user_id="shared")
    make_user(other_marketplace, external_user_id="shared")
    make_user(other_marketplace)

    listed = api.get("/api/v1/users")
    filtered = api.get("/api/v1/users", {"external_user_id": "shared"})

    assert [u["id"] for u in listed.json()["data"]] == [mine.public_id]
    assert [u["id"] for u in filtered.json()["data"]] == [mine.public_id]


def test_the_same_external_id_makes_one_user_per_marketplace(
    make_client, marketplace, other_marketplace
):
    mine, theirs = make_client(marketplace), make_client(other_marketplace)

    first = mine.post("/api/v1/users", {"external_user_id": "ext-1"}, format="json")
    second = theirs.post("/api/v1/users", {"external_user_id": "ext-1"}, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert MarketplaceUser.objects.filter(external_user_id="ext-1").count() == 2


def test_a_cursor_from_another_marketplace_reveals_nothing(
    make_client, make_user, marketplace, other_marketplace
):
    for _ in range(3):
        make_user(other_marketplace)
    mine = make_user(marketplace)
    theirs = make_client(other_marketplace).get("/api/v1/users", {"limit": 1})

    response = make_client(marketplace).get(
        "/api/v1/users", {"cursor": theirs.json()["pagination"]["next_cursor"]}
    )

    assert response.status_code == 200
    assert {u["id"] for u in response.json()["data"]} <= {mine.public_id}
