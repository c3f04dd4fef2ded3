"""Helpers shared by the platform tests: the error envelope and route discovery.

Routes are discovered from the URL resolver, so a route another app adds under /api/v1
is covered by the auth, scope and tenancy tests without anyone editing them.
"""

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Model
from django.urls import URLPattern, URLResolver, get_resolver

from orchestrator.api.views import ApiView
from orchestrator.models import ApiKey, AuditLog, Event, IdempotencyRecord, MarketplaceUser

API_PREFIX = "api/v1/"
# Unauthenticated by design: health and docs; the top-up callback (the payer's browser) and
# provider webhooks (their signature is the authentication).
PUBLIC = frozenset(
    {
        *("health", "health/ready", "openapi.json", "docs", "redoc"),
        *("topups/<str:topup_id>/callback", "webhooks/airtm"),
    }
)
METHODS = ("get", "post", "put", "patch", "delete")
PLACEHOLDER = {"int": "1", "uuid": "00000000-0000-0000-0000-000000000000"}
_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


@dataclass(frozen=True)
class Route:
    template: str  # "/api/v1/users/<str:user_id>"
    view: Any  # the view class, or None for a function view

    @property
    def params(self) -> list[str]:
        return [name for _, name in _PARAM.findall(self.template)]

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(r"{\2}", self.template)

    def path(self, **ids: str) -> str:
        """The route with each parameter replaced by ids[name] or a placeholder."""

        def fill(match: re.Match[str]) -> str:
            converter, name = match.group(1) or "str", match.group(2)
            return ids.get(name) or PLACEHOLDER.get(converter, f"{name}_1")

        return _PARAM.sub(fill, self.template)

    @property
    def methods(self) -> list[str]:
        """The methods the view implements; every method for a function view."""
        if self.view is None:
            return list(METHODS)
        return [m for m in METHODS if m in self.view.http_method_names and hasattr(self.view, m)]

    @property
    def is_api_view(self) -> bool:
        return self.view is not None and issubclass(self.view, ApiView)


def _walk(patterns: list[URLPattern | URLResolver], prefix: str) -> list[Route]:
    found: list[Route] = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, route)
        elif route.startswith(API_PREFIX) and route[len(API_PREFIX) :] not in PUBLIC:
            found.append(Route("/" + route, getattr(pattern.callback, "view_class", None)))
    return found


def protected_routes() -> list[Route]:
    """Every route under /api/v1 except the public ones, from the live URL configuration."""
    return _walk(get_resolver().url_patterns, "")


def route_id(route: Route) -> str:
    return route.template.removeprefix("/api/v1/")


def envelope(response: Any) -> dict[str, Any]:
    """The `error` object of an error answer, after checking the envelope's exact shape."""
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return dict(body["error"])


WRITTEN: tuple[type[Model], ...] = (MarketplaceUser, AuditLog, Event, IdempotencyRecord, ApiKey)


def row_counts() -> dict[str, int]:
    """How many rows each table a request could write holds."""
    return {model.__name__: model._default_manager.count() for model in WRITTEN}
