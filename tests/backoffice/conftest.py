"""Back-office fixtures: staff members in each role, signed in to the admin, and rows made
the way the flows make them (money only through ledger services)."""

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from escrow.models import Escrow, Order
from orchestrator.models import Marketplace, MarketplaceUser
from orchestrator.roles import ADMIN, FINANCE, SUPPORT, sync_roles

# The Trustless Work simulator and an order driven through the API to a funded escrow.
from tests.escrow.conftest import act, funded, tw  # noqa: F401

ROLES = (SUPPORT, FINANCE, ADMIN)


@pytest.fixture
def make_staff(db: None) -> Callable[..., User]:
    """A staff member (not a superuser) holding `role`, or no role at all with None."""
    sync_roles()
    counter = iter(range(1, 1_000_000))

    def make(role: str | None, username: str = "") -> User:
        user = User.objects.create_user(
            username or f"{role or 'norole'}-{next(counter)}", password="pw", is_staff=True
        )
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def staff_client(make_staff: Callable[..., User]) -> Callable[..., Client]:
    """A test client signed in as a new staff member holding `role`."""

    def make(role: str | None) -> Client:
        client = Client()
        client.force_login(make_staff(role))
        return client

    return make


@pytest.fixture
def finance(make_staff: Callable[..., User]) -> User:
    return make_staff(FINANCE, "fiona")


@pytest.fixture
def second_finance(make_staff: Callable[..., User]) -> User:
    return make_staff(FINANCE, "frank")


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
