"""Escrow fixtures: a buyer and a seller of the test marketplace."""

from collections.abc import Callable

import pytest

from orchestrator.models import Marketplace, MarketplaceUser


@pytest.fixture
def buyer(make_user: Callable[..., MarketplaceUser], marketplace: Marketplace) -> MarketplaceUser:
    return make_user(marketplace, "BUYER")


@pytest.fixture
def seller(make_user: Callable[..., MarketplaceUser], marketplace: Marketplace) -> MarketplaceUser:
    return make_user(marketplace, "SELLER")
