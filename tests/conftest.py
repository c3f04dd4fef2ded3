"""Shared fixtures: marketplaces, API keys and authenticated clients.

The suite runs on PostgreSQL. Tests marked `postgres` need it (locks, triggers,
constraints); they are skipped only when the database is SQLite and CI is not set,
and they fail instead of skipping whenever CI=true or DATABASE_URL names PostgreSQL.
"""

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from orchestrator.models import ApiKey, Marketplace, MarketplaceUser, Scope
from orchestrator.services import api_key_create, marketplace_create, user_create

if TYPE_CHECKING:
    from tests.worker import CeleryWorker

ALL_SCOPES = list(Scope.values)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings.IS_POSTGRES:
        return
    if os.environ.get("CI") or os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise pytest.UsageError(
            "CI or a PostgreSQL DATABASE_URL is set but the tests run on SQLite."
        )
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Rate-limit counters live in the cache; every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_marketplace(db: None) -> Callable[..., Marketplace]:
    counter = iter(range(1, 1_000_000))

    def make(name: str = "", platform_fee_bps: int = 0) -> Marketplace:
        n = next(counter)
        return marketplace_create(
            name=name or f"Marketplace {n}",
            slug=f"mkt-{n}-{os.getpid()}",
            platform_fee_bps=platform_fee_bps,
        )

    return make


@pytest.fixture
def marketplace(make_marketplace: Callable[..., Marketplace]) -> Marketplace:
    return make_marketplace("Acme")


@pytest.fixture
def other_marketplace(make_marketplace: Callable[..., Marketplace]) -> Marketplace:
    return make_marketplace("Other")


@pytest.fixture
def make_key() -> Callable[..., tuple[ApiKey, str]]:
    def make(
        marketplace: Marketplace, scopes: list[str] | None = None, **kwargs: object
    ) -> tuple[ApiKey, str]:
        return api_key_create(
            marketplace=marketplace,
            name="test",
            scopes=scopes or ALL_SCOPES,
            environment="test",
            **kwargs,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def make_client(make_key: Callable[..., tuple[ApiKey, str]]) -> Callable[..., APIClient]:
    """An APIClient that sends `Authorization: Bearer <a new key>` for `marketplace`."""

    def make(marketplace: Marketplace, scopes: list[str] | None = None) -> APIClient:
        _, raw = make_key(marketplace, scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def api(make_client: Callable[..., APIClient], marketplace: Marketplace) -> APIClient:
    """A client of `marketplace` holding every scope."""
    return make_client(marketplace)


@pytest.fixture
def make_user() -> Callable[..., MarketplaceUser]:
    counter = iter(range(1, 1_000_000))

    def make(
        marketplace: Marketplace, type: str = "BOTH", external_user_id: str = ""
    ) -> MarketplaceUser:
        user, _ = user_create(
            marketplace=marketplace,
            external_user_id=external_user_id or f"ext-{next(counter)}",
            email="",
            type=type,
        )
        return user

    return make


@pytest.fixture
def buyer(make_user: Callable[..., MarketplaceUser], marketplace: Marketplace) -> MarketplaceUser:
    return make_user(marketplace, "BUYER")


@pytest.fixture
def seller(make_user: Callable[..., MarketplaceUser], marketplace: Marketplace) -> MarketplaceUser:
    return make_user(marketplace, "SELLER")


@pytest.fixture
def celery_worker(transactional_db: None, worker_id: str) -> Iterator["CeleryWorker"]:
    """A real Celery worker process on Redis, using this test's (committed) database."""
    from tests.worker import CeleryWorker, dispatching_to

    queue = f"test-{worker_id}-{os.getpid()}"
    worker = CeleryWorker(queue)
    worker.start()
    try:
        with dispatching_to(queue):
            yield worker
    finally:
        worker.stop()
