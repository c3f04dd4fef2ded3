"""Back-office fixtures: staff users in each role, signed in to the admin; an order in
dispute; and rows made the way the flows make them (money only through ledger services).

The escrow fixtures (the Trustless Work simulator, the API driver, funded orders) and the
webhook receiver come from their apps' conftest modules.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from escrow.models import Dispute, Escrow, Order
from orchestrator.models import Marketplace, MarketplaceUser
from orchestrator.roles import ADMIN, FINANCE, SUPPORT, sync_roles

# Escrow and webhook fixtures, shared with those apps' tests.
from tests.escrow.conftest import _tw_env, act, funded, tw, tw_live  # noqa: F401
from tests.webhooks.conftest import make_endpoint, receiver  # noqa: F401

ROLES = (SUPPORT, FINANCE, ADMIN)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def make_staff(db: None) -> Callable[..., User]:
    """A staff login (not a superuser) holding `role` ("" or None: no role), with PASSWORD."""
    sync_roles()
    counter = iter(range(1, 1_000_000))

    def make(role: str | None, username: str = "") -> User:
        user = User.objects.create_user(
            username or f"{role or 'norole'}-{next(counter)}", password=PASSWORD, is_staff=True
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def staff_client(make_staff: Callable[..., User]) -> Callable[..., Client]:
    """A test client logged in as a new staff user holding `role`."""

    def make(role: str | None, username: str = "") -> Client:
        client = Client()
        client.force_login(make_staff(role, username))
        return client

    return make


@pytest.fixture
def finance(make_staff: Callable[..., User]) -> User:
    return make_staff(FINANCE, "fiona")


@pytest.fixture
def second_finance(make_staff: Callable[..., User]) -> User:
    return make_staff(FINANCE, "frank")


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


@pytest.fixture
def make_escrow() -> Callable[..., Escrow]:
    """An order and its escrow in `status`, written directly (no chain involved)."""

    def make(
        marketplace: Marketplace,
        buyer: MarketplaceUser,
        seller: MarketplaceUser,
        status: str = Escrow.Status.FUNDED,
        amount: str = "120.00",
        **escrow_fields: object,
    ) -> Escrow:
        order = Order.objects.create(
            marketplace=marketplace,
            buyer=buyer,
            seller=seller,
            amount=Decimal(amount),
            title="Logo design",
        )
        return Escrow.objects.create(
            marketplace=marketplace,
            order=order,
            kind=Escrow.Kind.SINGLE,
            status=status,
            engagement_id=order.public_id,
            amount=Decimal(amount),
            **escrow_fields,
        )

    return make


def days_ago(days: int) -> datetime:
    return timezone.now() - timedelta(days=days)
