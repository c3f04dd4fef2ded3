"""Idempotency-Key: replay, reuse, concurrency, scope, expiry."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.api.idempotency import idempotency_cleanup
from orchestrator.models import AuditLog, IdempotencyRecord, MarketplaceUser
from tests.ledger.conftest import run_concurrently

pytestmark = pytest.mark.django_db


def post(client, body, key="k-1"):
    return client.post("/api/v1/users", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_same_key_and_body_replays_the_first_answer(api):
    first = post(api, {"external_user_id": "a"})
    again = post(api, {"external_user_id": "a"})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again["Idempotency-Replayed"] == "true"
    assert MarketplaceUser.objects.filter(external_user_id="a").count() == 1


def test_an_error_is_replayed_too(api):
    first = post(api, {"external_user_id": "a", "colour": "red"})
    again = post(api, {"external_user_id": "a", "colour": "red"})

    assert (first.status_code, again.status_code) == (400, 400)
    assert again.json() == first.json()
    assert again["Idempotency-Replayed"] == "true"


def test_same_key_with_another_body_is_a_conflict(api):
    post(api, {"external_user_id": "a"})

    response = post(api, {"external_user_id": "b"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert not MarketplaceUser.objects.filter(external_user_id="b").exists()


def test_key_order_and_spacing_do_not_make_another_body(api):
    api.post(
        "/api/v1/users",
        '{"external_user_id": "a", "type": "BUYER"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )

    again = api.post(
        "/api/v1/users",
        '{"type":"BUYER","external_user_id":"a"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )

    assert again["Idempotency-Replayed"] == "true"


def test_keys_are_scoped_per_api_key_so_replays_never_leak(
    make_client, marketplace, other_marketplace
):
    mine, theirs = make_client(marketplace), make_client(other_marketplace)
    post(mine, {"external_user_id": "a"})

    response = post(theirs, {"external_user_id": "a"})

    assert response.status_code == 201
    assert "Idempotency-Replayed" not in response
    assert MarketplaceUser.objects.filter(external_user_id="a").count() == 2


def test_keys_are_scoped_per_path(api, make_user, marketplace):
    user = make_user(marketplace)
    post(api, {"external_user_id": "a"}, key="same")

    response = api.post(
        f"/api/v1/users/{user.public_id}/balance/credit",
        {"amount": "1.00", "currency": "USD", "reason": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="same",
    )

    assert response.status_code == 200


def test_an_unauthenticated_replay_attempt_gets_401_not_the_stored_answer(api):
    post(api, {"external_user_id": "a"})

    response = APIClient().post(
        "/api/v1/users", {"external_user_id": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert response.status_code == 401


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é"])
def test_malformed_keys_are_refused(api, key):
    response = post(api, {"external_user_id": "a"}, key=key)

    assert response.status_code == 400
    assert not MarketplaceUser.objects.exists()


def test_records_expire_and_are_cleaned_up(api):
    post(api, {"external_user_id": "a"})
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    again = post(api, {"external_user_id": "b"})  # an expired key is free again

    assert again.status_code == 201
    assert "Idempotency-Replayed" not in again
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency_cleanup() == 1
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_with_one_key_execute_once(make_key, marketplace):
    _, raw = make_key(marketplace, ["write"])

    def call(_n: int) -> tuple[int, str, bool]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        response = post(client, {"external_user_id": "race"}, key="race-key")
        code = "" if response.status_code == 201 else response.json()["error"]["code"]
        return response.status_code, code, response.has_header("Idempotency-Replayed")

    results = run_concurrently(call, [(n,) for n in range(20)], workers=20)

    assert not [r for r in results if isinstance(r, Exception)]
    assert MarketplaceUser.objects.filter(external_user_id="race").count() == 1
    assert (
        AuditLog.objects.filter(action="user.created").exclude(object_type="api_key").count() == 1
    )
    fresh = [r for r in results if r[0] == 201 and not r[2]]
    assert len(fresh) == 1
    assert all(r[0] == 201 or r[1] == "IDEMPOTENCY_KEY_IN_PROGRESS" for r in results)


def test_a_5xx_answer_is_not_stored_so_a_retry_runs_again(api, monkeypatch):
    from orchestrator.errors import UpstreamError

    def boom(**kwargs):
        raise UpstreamError("provider down", retryable=True)

    monkeypatch.setattr("orchestrator.api.users.user_create", boom)
    failed = post(api, {"external_user_id": "a"})
    monkeypatch.undo()

    retried = post(api, {"external_user_id": "a"})

    assert failed.status_code == 502
    assert retried.status_code == 201
    assert "Idempotency-Replayed" not in retried


@override_settings(IDEMPOTENCY_TTL_HOURS=1)
def test_records_keep_the_configured_lifetime(api):
    post(api, {"external_user_id": "a"})

    record = IdempotencyRecord.objects.get()

    assert timedelta(minutes=59) < record.expires_at - record.created_at <= timedelta(hours=1)
