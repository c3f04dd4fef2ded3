"""Helpers for escrow tests: driving an order through the API."""

from decimal import Decimal
from typing import Any

from escrow.models import Order
from ledger.selectors import available_balance
from ledger.services import system_account
from providers.models import StellarKey


def create_order(api: Any, buyer: Any, seller: Any, amount: str = "120.00", **extra: Any) -> str:
    body = {
        "buyer_id": buyer.public_id,
        "seller_id": seller.public_id,
        "amount": amount,
        "title": "Logo design",
        **extra,
    }
    response = api.post("/api/v1/orders", body, format="json")
    assert response.status_code == 201, response.json()
    return str(response.json()["id"])


def get_order(api: Any, order_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/orders/{order_id}")
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


def status(order_id: str) -> str:
    return str(Order.objects.get(public_id=order_id).status)


def usdc(marketplace, code):
    account = system_account(marketplace_id=marketplace.pk, code=code, currency="USDC")
    return available_balance(account=account).amount


def stroops(amount) -> int:
    return int(Decimal(amount) * 10_000_000)


def wallet(user) -> str:
    return StellarKey.objects.get(user=user).public_key
