"""Events about webhook endpoints themselves."""

from dataclasses import dataclass
from typing import ClassVar

from orchestrator.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class WebhookPing(DomainEvent):
    """A test message, sent on request to one endpoint only (never to SSE or other endpoints)."""

    type = "webhook.ping"
    aggregate_type = "webhook_endpoint"
    internal: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class WebhookEndpointDisabled(DomainEvent):
    """An endpoint was disabled after failing without a success for too long."""

    type = "webhook_endpoint.disabled"
    aggregate_type = "webhook_endpoint"

    url: str
    reason: str
    failing_since: str
