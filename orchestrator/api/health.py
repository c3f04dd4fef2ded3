"""Liveness and readiness. Public: load balancers call them without a key."""

import time
from typing import Any

from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.views import PublicView

VERSION = "1.0.0"


class HealthApi(PublicView):
    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "version": VERSION})


class ReadinessApi(PublicView):
    """200 when the database and Redis answer, 503 naming the one that does not."""

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request: Request) -> Response:
        checks = {"database": _check(_ping_database), "redis": _check(_ping_redis)}
        ready = all(check["status"] in ("ok", "not_configured") for check in checks.values())
        return Response(
            {"status": "ready" if ready else "not_ready", "version": VERSION, "checks": checks},
            status=200 if ready else 503,
        )


def _check(probe: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        outcome = probe()
    except Exception as exc:  # any failure means not ready; the type is what an operator needs
        return {"status": "error", "error": type(exc).__name__}
    return {"status": outcome, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _ping_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _ping_redis() -> str:
    if not settings.REDIS_URL:
        return "not_configured"  # embedded mode: in-process cache and tasks
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"
