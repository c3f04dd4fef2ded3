"""Back-office fixtures: staff users in each role, and an order in dispute.

The escrow fixtures (the Trustless Work simulator, the API driver, funded orders) and the
webhook receiver come from their apps' conftest modules.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from escrow.models import Dispute, Order
from orchestrator.models import MarketplaceUser
from orchestrator.roles import ADMIN, FINANCE, SUPPORT

# Escrow and webhook fixtures, shared with those apps' tests.
from tests.escrow.conftest import _tw_env, act, funded, tw, tw_live  # noqa: F401
from tests.webhooks.conftest import make_endpoint, receiver  # noqa: F401

ROLES = (SUPPORT, FINANCE, ADMIN)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def make_staff(db: None) -> Callable[..., User]:
    """A staff login in `role` ("" for none), with PASSWORD."""

    def make(role: str, username: str = "") -> User:
        user = User.objects.create_user(
            username or f"{role or 'norole'}-agent", password=PASSWORD, is_staff=True
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def staff_client(make_staff: Callable[..., User]) -> Callable[..., Client]:
    """A test client logged in as a new staff user in `role`."""

    def make(role: str, username: str = "") -> Client:
        client = Client()
        client.force_login(make_staff(role, username))
        return client

    return make


@pytest.fixture
def disputed(act: Any, funded: Any) -> Callable[..., Dispute]:  # noqa: F811
    """A funded order (platform fee 250 bps) in dispute, opened by the buyer with evidence."""

    def make(amount: str = "120.00", fee_bps: int = 250) -> Dispute:
        order_id = funded(amount=amount, fee_bps=fee_bps)
        body = {
            "opened_by": "BUYER",
            "reason": "QUALITY_ISSUE",
            "description": "The logo is not what was agreed.",
            "evidence": ["https://evidence.example/brief.pdf", "chat log of 3 May"],
        }
        opened = act(f"/orders/{order_id}/resolution/dispute", body, status=201)
        return Dispute.objects.select_related("order").get(public_id=opened["id"])

    return make


@pytest.fixture
def bare_dispute(buyer: Any, seller: Any) -> Callable[..., Dispute]:
    """An OPEN dispute on an order made directly in the database (no money, no chain): for
    pages that only read disputes, such as the queue."""

    def make(marketplace: Any = None, **fields: Any) -> Dispute:
        market = marketplace or buyer.marketplace
        if market.pk == buyer.marketplace_id:
            people = {"buyer": buyer, "seller": seller}
        else:
            people = {
                "buyer": MarketplaceUser.objects.create(marketplace=market, external_user_id="b"),
                "seller": MarketplaceUser.objects.create(marketplace=market, external_user_id="s"),
            }
        order = Order.objects.create(
            marketplace=market, amount=Decimal("10.00"), title="Bare", **people
        )
        return Dispute.objects.create(
            marketplace=market, order=order, opened_by="BUYER", reason="OTHER", **fields
        )

    return make
