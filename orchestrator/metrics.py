"""Prometheus metrics: what an operator alerts on (see docs/operations.md).

Counters and histograms are updated where the thing happens (the request middleware, the
provider call recorder, the webhook dispatcher, the inbound webhook view); the Celery queue
depth is read from Redis when Prometheus scrapes. `GET /metrics` serves them when
METRICS_ENABLED is on (behind METRICS_TOKEN when that is set).

Several processes (gunicorn workers, Celery's prefork children) each count their own share.
With PROMETHEUS_MULTIPROC_DIR set before start, prometheus_client keeps every process's
values in files there and a scrape adds them up; the directory must be empty when the server
starts (orchestrator.gunicorn_config and the Celery worker's start clear it) and private to
one server: never shared between containers, whose process ids may repeat.
"""

import hmac
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import redis
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUEST_SECONDS = Histogram(
    "offerhub_http_request_duration_seconds",
    "Time from the request reaching Django to its response (streams: to their first byte).",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PROVIDER_CALLS = Counter(
    "offerhub_provider_calls",
    "HTTP requests made to a provider, by outcome (ok, http_error, invalid_response, "
    "timeout, connection_error): one per ProviderCall row, retries included.",
    ["provider", "operation", "outcome"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "offerhub_provider_call_duration_seconds",
    "Duration of HTTP requests made to a provider.",
    ["provider", "operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_DELIVERY_ATTEMPTS = Counter(
    "offerhub_webhook_delivery_attempts",
    "Outbound webhook attempts by result: succeeded, retrying (failed, will retry), failed "
    "(failed for good), superseded (another attempt took over).",
    ["result"],
)
INBOUND_WEBHOOK_REJECTIONS = Counter(
    "offerhub_inbound_webhook_verification_failures",
    "Inbound provider webhooks refused because their signature did not verify.",
    ["provider", "code"],
)


def http_request_observe(*, route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"  # clients choose methods: bound them
    HTTP_REQUEST_SECONDS.labels(route, method, str(status)).observe(seconds)


def provider_call_observe(*, provider: str, operation: str, outcome: str, seconds: float) -> None:
    PROVIDER_CALLS.labels(provider, operation, outcome).inc()
    PROVIDER_CALL_SECONDS.labels(provider, operation).observe(seconds)


# --- Scraping ---------------------------------------------------------------------------------

_redis_clients: dict[str, redis.Redis] = {}


def celery_queue_lengths(broker_url: str, queues: list[str]) -> dict[str, int]:
    """Messages waiting in each queue of a Redis broker (priority sub-queues included).

    Kombu keeps a queue as a Redis list named after it, plus one list per priority step
    ("<queue>\\x06\\x16<n>"); a task being run by a worker is no longer in any of them.
    """
    client = _redis_clients.get(broker_url)
    if client is None:
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        _redis_clients[broker_url] = client
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
            for step in (3, 6, 9):
                pipe.llen(f"{queue}\x06\x16{step}")
        lengths = pipe.execute()
    return {queue: sum(lengths[n * 4 : n * 4 + 4]) for n, queue in enumerate(queues)}


class CeleryQueueCollector(Collector):
    """offerhub_celery_queue_length and offerhub_celery_broker_up, read at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        broker: str = settings.CELERY_BROKER_URL
        if not broker.startswith(("redis://", "rediss://", "unix://")):
            return  # in-process tasks (embedded mode): there is no queue to measure
        queues = list(dict.fromkeys([_default_queue(), *settings.METRICS_CELERY_QUEUES]))
        up = GaugeMetricFamily(
            "offerhub_celery_broker_up", "1 when the Celery broker (Redis) answered the scrape."
        )
        length = GaugeMetricFamily(
            "offerhub_celery_queue_length",
            "Celery tasks waiting in each queue (Redis list lengths, read at scrape).",
            labels=["queue"],
        )
        try:
            for queue, count in celery_queue_lengths(broker, queues).items():
                length.add_metric([queue], count)
        except redis.RedisError as exc:
            logger.warning("Metrics: could not read the Celery queues: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield length


def _default_queue() -> str:
    from orchestrator.celery import app

    return str(app.conf.task_default_queue or "celery")


_scrape_time = CollectorRegistry(auto_describe=False)
_scrape_time.register(CeleryQueueCollector())


def process_registry() -> CollectorRegistry:
    """Every process's counters (multiprocess mode) or this process's (otherwise)."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def exposition() -> bytes:
    return generate_latest(process_registry()) + generate_latest(_scrape_time)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: 404 unless METRICS_ENABLED; 401 without the METRICS_TOKEN bearer."""
    if not settings.METRICS_ENABLED:
        raise Http404
    token: str = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


# --- Process lifecycle (gunicorn hooks, Celery signals) --------------------------------------


def multiprocess_dir_reset() -> None:
    """Empty PROMETHEUS_MULTIPROC_DIR (when set) before a server forks its workers: files of
    a previous run would otherwise be added to this one's counts."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def multiprocess_process_dead(pid: int) -> None:
    """Forget the live gauges of a worker that exited (its counters stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
