"""Outbound webhook fixtures: a live receiver and endpoints pointing at it."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from orchestrator.models import Marketplace
from tests.webhooks.receiver import Receiver, serving
from webhooks.models import WebhookEndpoint
from webhooks.outbound import endpoint_create


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver()) as live:
        yield live


@pytest.fixture
def make_endpoint() -> Callable[..., tuple[WebhookEndpoint, str]]:
    def make(
        marketplace: Marketplace, url: str, event_types: list[str] | None = None
    ) -> tuple[WebhookEndpoint, str]:
        return endpoint_create(marketplace=marketplace, url=url, event_types=event_types or ["*"])

    return make


def create_endpoint(api: APIClient, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v1/webhooks/endpoints", body, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())
