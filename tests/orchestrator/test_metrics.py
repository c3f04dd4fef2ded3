"""Prometheus metrics: GET /metrics is guarded, and each metric moves when its thing happens."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import pytest
import redis
import responses
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from orchestrator.metrics import multiprocess_dir_reset
from orchestrator.models import Marketplace, MarketplaceUser
from providers.clients.airtm import AirtmClient
from providers.clients.errors import ProviderError
from providers.models import ProviderCall
from tests.webhooks.receiver import Receiver, serving
from webhooks.models import WebhookDelivery
from webhooks.outbound import endpoint_create
from webhooks.svix import sign

ROOT = Path(__file__).resolve().parents[2]
USER_ROUTE = "/api/v1/users/<str:user_id>"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: APIClient, token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", headers=headers)
    return response.status_code, response.content.decode()


def test_metrics_are_not_served_unless_enabled(client: APIClient) -> None:
    assert scrape(client)[0] == 404


@override_settings(METRICS_ENABLED=True, METRICS_TOKEN="")
def test_metrics_are_served_in_the_prometheus_text_format_when_enabled(client: APIClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE offerhub_http_request_duration_seconds histogram" in response.content.decode()


@override_settings(METRICS_ENABLED=True, METRICS_TOKEN="scrape-me")
def test_a_metrics_token_is_required_when_set(client: APIClient) -> None:
    assert scrape(client)[0] == 401
    assert scrape(client, token="wrong")[0] == 401
    assert scrape(client, token="scrape-me")[0] == 200


@pytest.mark.django_db
def test_request_latency_is_counted_by_route_template_method_and_status(
    api: APIClient, make_user: Callable[..., MarketplaceUser], marketplace: Marketplace
) -> None:
    user = make_user(marketplace)
    ok = {"route": USER_ROUTE, "method": "GET", "status": "200"}
    missing = {"route": USER_ROUTE, "method": "GET", "status": "404"}
    before = sample("offerhub_http_request_duration_seconds_count", **ok)
    before_missing = sample("offerhub_http_request_duration_seconds_count", **missing)
    unmatched = {"route": "<unmatched>", "method": "other", "status": "404"}
    before_unmatched = sample("offerhub_http_request_duration_seconds_count", **unmatched)

    api.get(f"/api/v1/users/{user.public_id}")
    api.get(f"/api/v1/users/{user.public_id}")
    api.get("/api/v1/users/usr_nobody")
    api.generic("BREW", "/no/such/path")

    assert sample("offerhub_http_request_duration_seconds_count", **ok) == before + 2
    assert sample("offerhub_http_request_duration_seconds_count", **missing) == before_missing + 1
    assert sample("offerhub_http_request_duration_seconds_count", **unmatched) == (
        before_unmatched + 1
    )


@pytest.mark.django_db
def test_provider_calls_are_counted_by_provider_operation_and_outcome() -> None:
    labels = {"provider": "airtm", "operation": "get_payout", "outcome": "http_error"}
    before = sample("offerhub_provider_calls_total", **labels)
    client = AirtmClient(
        base_url="http://127.0.0.1:9/airtm/v2/",
        api_key="key",
        api_secret="secret",
        checkout_url="https://checkout.test/{id}",
        sleep=lambda seconds: None,
    )

    with responses.RequestsMock() as mock:
        mock.get("http://127.0.0.1:9/airtm/v2/payouts/p1", status=503, body="{}")
        with pytest.raises(ProviderError):
            client.get_payout("p1")

    recorded = ProviderCall.objects.filter(operation="get_payout", outcome="http_error").count()
    assert recorded >= 1
    assert sample("offerhub_provider_calls_total", **labels) == before + recorded


@pytest.mark.django_db
def test_outbound_webhook_attempts_are_counted_by_result(
    make_user: Callable[..., MarketplaceUser],
    marketplace: Marketplace,
    django_capture_on_commit_callbacks: Callable[..., ContextManager[object]],
) -> None:
    before = sample("offerhub_webhook_delivery_attempts_total", result="retrying")

    with serving(Receiver(statuses=[500])) as receiver:
        endpoint_create(marketplace=marketplace, url=receiver.url, event_types=["*"])
        with django_capture_on_commit_callbacks(execute=True):
            make_user(marketplace)

    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.PENDING
    assert sample("offerhub_webhook_delivery_attempts_total", result="retrying") == before + 1


@pytest.mark.django_db
def test_inbound_webhooks_that_fail_verification_are_counted(client: APIClient) -> None:
    body = json.dumps({"type": "payin.confirmed", "data": {"id": "p-1"}}).encode()
    stamp = int(time.time())
    labels = {"provider": "airtm", "code": "WEBHOOK_SIGNATURE_INVALID"}
    before = sample("offerhub_inbound_webhook_verification_failures_total", **labels)
    wrong = sign(secret="whsec_" + "A" * 44, msg_id="msg_1", timestamp=stamp, body=body)

    response = client.post(
        "/api/v1/webhooks/airtm",
        data=body,
        content_type="application/json",
        HTTP_SVIX_ID="msg_1",
        HTTP_SVIX_TIMESTAMP=str(stamp),
        HTTP_SVIX_SIGNATURE=wrong,
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == labels["code"]
    assert sample("offerhub_inbound_webhook_verification_failures_total", **labels) == before + 1


@pytest.mark.redis
def test_celery_queue_depth_is_read_from_redis_at_scrape(client: APIClient) -> None:
    queue = f"metrics-test-{os.getpid()}"
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete(queue, f"{queue}\x06\x166")
    broker.lpush(queue, "a", "b")
    broker.lpush(f"{queue}\x06\x166", "c")  # a priority sub-queue counts too
    try:
        with override_settings(
            METRICS_ENABLED=True,
            METRICS_TOKEN="",
            CELERY_BROKER_URL=settings.REDIS_URL,
            METRICS_CELERY_QUEUES=[queue],
        ):
            status, text = scrape(client)
    finally:
        broker.delete(queue, f"{queue}\x06\x166")
        broker.close()

    assert status == 200
    assert f'offerhub_celery_queue_length{{queue="{queue}"}} 3.0' in text
    assert "offerhub_celery_broker_up 1.0" in text


@override_settings(
    METRICS_ENABLED=True, METRICS_TOKEN="", CELERY_BROKER_URL="redis://127.0.0.1:1/0"
)
def test_an_unreachable_broker_is_reported_not_raised(client: APIClient) -> None:
    status, text = scrape(client)

    assert status == 200
    assert "offerhub_celery_broker_up 0.0" in text


def test_several_processes_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """What gunicorn's workers do: each counts into PROMETHEUS_MULTIPROC_DIR, one scrape
    reports the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"

    def python(code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    python("from orchestrator.metrics import multiprocess_dir_reset; multiprocess_dir_reset()")
    observe = (
        "from orchestrator.metrics import http_request_observe; "
        "http_request_observe(route='/x', method='GET', status=200, seconds=0.02)"
    )
    python(observe)
    python(observe)
    text = python("from orchestrator.metrics import exposition; print(exposition().decode())")

    count = 'offerhub_http_request_duration_seconds_count{method="GET",route="/x",status="200"}'
    assert f"{count} 2.0" in text


def test_the_multiprocess_directory_is_emptied_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))

    multiprocess_dir_reset()

    assert directory.is_dir()
    assert list(directory.iterdir()) == []
