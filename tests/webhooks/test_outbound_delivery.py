"""Outbound delivery, in-process (eager tasks) against a real HTTP receiver: Standard Webhooks
signatures checked with the independent `standardwebhooks` library, only 2xx counting, every
attempt recorded, backoff for at least 3 days, the response cap, auto-disable, SSRF refusal."""

import itertools
import json
import socket
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orchestrator.models import Event
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.outbound import deliveries_sweep, retry_delay
from webhooks.tasks import delivery_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliver(django_capture_on_commit_callbacks, make_user, marketplace):
    """Make a user (one user.created event) and run the delivery tasks it queues."""

    def run():
        with django_capture_on_commit_callbacks(execute=True):
            user = make_user(marketplace)
        return Event.objects.get(type="user.created", aggregate_id=user.public_id)

    return run


def sweep_when_due(django_capture_on_commit_callbacks, delivery: WebhookDelivery) -> None:
    """Travel to the delivery's next attempt and run the sweeper, as beat would."""
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    with (
        time_machine.travel(delivery.next_attempt_at + timedelta(seconds=1), tick=True),
        django_capture_on_commit_callbacks(execute=True),
    ):
        delivery_sweep.delay()


def test_a_delivery_verifies_with_the_standardwebhooks_library(
    receiver, make_endpoint, marketplace, deliver
):
    _, secret = make_endpoint(marketplace, receiver.url)

    event = deliver()

    (request,) = receiver.received
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["id"] == event.public_id
    assert payload["type"] == "user.created"
    assert payload["aggregate"] == {"type": "user", "id": event.aggregate_id}
    assert request.headers["webhook-id"] == event.public_id
    assert request.headers["content-type"] == "application/json"
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempt_count == 1


def test_the_library_rejects_a_wrong_secret_and_a_changed_body(
    receiver, make_endpoint, marketplace, deliver
):
    make_endpoint(marketplace, receiver.url)
    deliver()
    (request,) = receiver.received
    other_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    reserialised = json.dumps(json.loads(request.body), indent=1).encode()

    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(_secret_of(request)).verify(reserialised, request.headers)


def _secret_of(request) -> str:
    from webhooks.outbound import endpoint_signing_secrets

    (secret,) = endpoint_signing_secrets(WebhookEndpoint.objects.get(), timezone.now())
    return secret


@pytest.mark.parametrize("status", [500, 404, 302, 410])
def test_only_2xx_counts_and_every_attempt_is_recorded(
    receiver, make_endpoint, marketplace, deliver, status
):
    receiver.statuses = [status]
    receiver.body = b"nope " * 1000
    make_endpoint(marketplace, receiver.url)

    deliver()

    delivery = WebhookDelivery.objects.get()
    (attempt,) = WebhookAttempt.objects.filter(delivery=delivery)
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.last_status_code == status
    assert attempt.succeeded is False
    assert attempt.duration_ms >= 0
    assert attempt.status_code == status
    assert attempt.response_body.startswith("nope")
    assert len(attempt.response_body) == 2000  # truncated


def test_a_receiver_that_fails_twice_then_succeeds(
    receiver, make_endpoint, marketplace, deliver, django_capture_on_commit_callbacks
):
    receiver.statuses = [503, 500]
    _, secret = make_endpoint(marketplace, receiver.url)
    deliver()
    delivery = WebhookDelivery.objects.get()

    sweep_when_due(django_capture_on_commit_callbacks, delivery)
    sweep_when_due(django_capture_on_commit_callbacks, delivery)

    delivery.refresh_from_db()
    attempts = list(delivery.attempts.values_list("number", "status_code", "succeeded"))
    assert attempts == [(1, 503, False), (2, 500, False), (3, 200, True)]
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.body for r in receiver.received}) == 1
    for request in receiver.received:
        Webhook(secret).verify(request.body, request.headers)


def test_the_sweeper_leaves_deliveries_that_are_not_due_or_owned(
    receiver, make_endpoint, marketplace, deliver
):
    receiver.statuses = [500]
    make_endpoint(marketplace, receiver.url)
    deliver()

    assert deliveries_sweep() == 0  # the retry is in the future
    WebhookDelivery.objects.update(
        next_attempt_at=timezone.now(), locked_until=timezone.now() + timedelta(minutes=1)
    )
    assert deliveries_sweep() == 0  # a queued task owns it
    assert len(receiver.received) == 1


def test_retries_back_off_with_jitter_for_at_least_three_days(
    settings, receiver, make_endpoint, marketplace, deliver, django_capture_on_commit_callbacks
):
    receiver.statuses = [500] * 200
    make_endpoint(marketplace, receiver.url)
    deliver()
    delivery = WebhookDelivery.objects.get()

    while delivery.status == WebhookDelivery.Status.PENDING:
        sweep_when_due(django_capture_on_commit_callbacks, delivery)
        delivery.refresh_from_db()

    starts = list(delivery.attempts.values_list("started_at", flat=True))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert starts[-1] - starts[0] >= timedelta(days=3)
    assert gaps[0] < 60
    assert max(gaps) <= settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS * 1.2 + 2
    assert gaps[5] > gaps[1] * 4  # exponential
    assert len(starts) < 40


def test_retry_delays_are_jittered_and_capped(settings):
    delays = [retry_delay(3) for _ in range(200)]
    capped = [retry_delay(40) for _ in range(50)]

    assert len(set(delays)) > 100
    assert all(20 * 0.8 <= d <= 20 * 1.2 for d in delays)
    assert all(d <= settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS * 1.2 for d in capped)


def test_a_response_over_the_cap_is_not_read_further(
    settings, receiver, make_endpoint, marketplace, deliver
):
    settings.WEBHOOK_MAX_RESPONSE_BYTES = 100_000
    receiver.body = b"x" * 1_000_000
    make_endpoint(marketplace, receiver.url)

    deliver()

    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 200
    assert attempt.succeeded is True
    assert "larger than 100000 bytes" in attempt.error
    assert len(attempt.response_body) == 2000


def test_a_slow_receiver_times_out(settings, receiver, make_endpoint, marketplace, deliver):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    receiver.sleep = 2
    make_endpoint(marketplace, receiver.url)

    deliver()

    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None
    assert "Timeout" in attempt.error
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.PENDING


def test_an_endpoint_failing_too_long_is_disabled_with_an_event(
    settings, receiver, make_endpoint, marketplace, deliver
):
    settings.WEBHOOK_AUTO_DISABLE_SECONDS = 0
    receiver.statuses = [500]
    failing, _ = make_endpoint(marketplace, receiver.url, ["user.*"])
    watcher, _ = make_endpoint(marketplace, receiver.url + "/ops", ["webhook_endpoint.*"])

    deliver()

    failing.refresh_from_db()
    disabled = Event.objects.get(type="webhook_endpoint.disabled")
    assert failing.is_enabled is False
    assert failing.disabled_reason.startswith("failing without a success")
    assert WebhookDelivery.objects.get(endpoint=failing).status == WebhookDelivery.Status.FAILED
    assert disabled.aggregate_id == failing.public_id
    assert disabled.marketplace_id == marketplace.pk
    told = WebhookDelivery.objects.get(endpoint=watcher, event=disabled)
    assert told.status == WebhookDelivery.Status.SUCCEEDED
    assert json.loads(receiver.received[-1].body)["type"] == "webhook_endpoint.disabled"


def test_a_success_clears_the_failure_record(receiver, make_endpoint, marketplace, deliver):
    endpoint, _ = make_endpoint(marketplace, receiver.url)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())

    deliver()

    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    assert endpoint.is_enabled is True


# --- SSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",  # not https
        "https://127.0.0.1/in",
        "https://10.1.2.3/in",
        "https://192.168.0.10/in",
        "https://172.16.5.4/in",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/in",
        "https://0.0.0.0/in",
        "https://[::1]/in",
        "https://[::ffff:127.0.0.1]/in",
        "https://[fd00::1]/in",
        "https://localhost/in",
        "https://api.localhost/in",
        "https://user:pass@hooks.example.com/in",
        "ftp://hooks.example.com/in",
    ],
)
def test_private_loopback_and_insecure_targets_are_refused(settings, api, url):
    settings.WEBHOOK_TEST_MODE = False

    response = api.post("/api/v1/webhooks/endpoints", {"url": url}, format="json")

    assert response.status_code == 400, url
    assert response.json()["error"]["code"] == "WEBHOOK_TARGET_REFUSED"
    assert not WebhookEndpoint.objects.exists()


def test_a_public_https_target_is_accepted_outside_test_mode(settings, api):
    settings.WEBHOOK_TEST_MODE = False

    response = api.post("/api/v1/webhooks/endpoints", {"url": "https://8.8.8.8/in"}, format="json")

    assert response.status_code == 201


def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    settings, monkeypatch, receiver, make_endpoint, marketplace, deliver
):
    settings.WEBHOOK_TEST_MODE = False
    port = int(receiver.url.split(":")[2].split("/")[0])
    make_endpoint(marketplace, f"https://hooks.example.com:{port}/hooks")

    def rebinding(host, *args, **kwargs):
        assert host == "hooks.example.com"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)

    deliver()

    attempt = WebhookAttempt.objects.get()
    assert attempt.error.startswith("refused: ")
    assert "non-public" in attempt.error
    assert receiver.received == []
