"""Outbound delivery with a real Celery worker process: retries scheduled by the worker, and
a worker killed in the middle of a request (the delivery still arrives)."""

import json
import threading

import pytest
from standardwebhooks.webhooks import Webhook

from orchestrator.models import Event
from tests.webhooks.receiver import Receiver, serving
from tests.worker import CeleryWorker, wait_until
from webhooks.models import WebhookDelivery
from webhooks.tasks import delivery_sweep

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def worker_settings(monkeypatch, settings):
    """Short retries and leases, in this process and in the worker it starts."""
    values = {"WEBHOOK_RETRY_BASE_SECONDS": "0.2", "WEBHOOK_LEASE_SECONDS": "2"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
        setattr(settings, name, float(value))


def test_a_receiver_that_fails_twice_then_succeeds(
    worker_settings, request, make_marketplace, make_endpoint, make_user
):
    worker = request.getfixturevalue("celery_worker")
    marketplace = make_marketplace()
    with serving(Receiver(statuses=[500, 502])) as receiver:
        _, secret = make_endpoint(marketplace, receiver.url)

        user = make_user(marketplace)

        delivery = WebhookDelivery.objects.get()
        wait_until(
            lambda: WebhookDelivery.objects.get(pk=delivery.pk).status != "pending", timeout=60
        )
    delivery.refresh_from_db()
    event = Event.objects.get(aggregate_id=user.public_id)
    attempts = list(delivery.attempts.values_list("number", "status_code", "succeeded"))
    assert attempts == [(1, 500, False), (2, 502, False), (3, 200, True)], worker.output[-20:]
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert [r.headers["webhook-id"] for r in receiver.received] == [event.public_id] * 3
    for received in receiver.received:
        assert Webhook(secret).verify(received.body, received.headers)["id"] == event.public_id


def test_a_worker_killed_mid_delivery_does_not_lose_the_event(
    worker_settings, request, make_marketplace, make_endpoint, make_user
):
    worker: CeleryWorker = request.getfixturevalue("celery_worker")
    marketplace = make_marketplace()
    hold = threading.Event()
    with serving(Receiver(hold=hold)) as receiver:
        _, secret = make_endpoint(marketplace, receiver.url)
        user = make_user(marketplace)
        assert receiver.arrived.wait(60), worker.output[-20:]

        worker.kill()  # SIGKILL while the worker waits for the receiver's answer
        hold.set()
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == WebhookDelivery.Status.PENDING
        assert delivery.attempts.count() == 0  # the dying worker recorded nothing

        replacement = CeleryWorker(worker.queue)
        replacement.start()
        try:

            def delivered() -> bool:
                delivery_sweep.delay()  # what beat does every 10 s
                return WebhookDelivery.objects.get(pk=delivery.pk).status == "succeeded"

            wait_until(delivered, timeout=60, interval=0.5)
        finally:
            replacement.stop()

    event = Event.objects.get(aggregate_id=user.public_id)
    assert len(receiver.received) >= 2  # at least once: the first copy may have arrived too
    assert {r.headers["webhook-id"] for r in receiver.received} == {event.public_id}
    assert {json.loads(r.body)["id"] for r in receiver.received} == {event.public_id}
    last = receiver.received[-1]
    assert Webhook(secret).verify(last.body, last.headers)["type"] == "user.created"
