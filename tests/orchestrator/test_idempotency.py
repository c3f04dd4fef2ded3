"""Idempotency-Key on mutating requests: replay, reuse, concurrency, scope, expiry, cleanup."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from orchestrator.errors import UpstreamError
from orchestrator.models import AuditLog, Event, IdempotencyRecord, MarketplaceUser
from orchestrator.redaction import REDACTED
from orchestrator.tasks import idempotency_cleanup
from tests.orchestrator.support import envelope

pytestmark = pytest.mark.django_db


def post(client, body, key="k-1", path="/api/v1/users"):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_same_key_and_body_replays_the_first_answer_without_running_again(api):
    first = post(api, {"external_user_id": "a"})

    again = post(api, {"external_user_id": "a"})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again["Idempotency-Replayed"] == "true"
    assert "Idempotency-Replayed" not in first
    assert MarketplaceUser.objects.filter(external_user_id="a").count() == 1
    assert AuditLog.objects.filter(action="user.created").count() == 1
    assert Event.objects.filter(type="user.created").count() == 1


def test_a_replay_keeps_the_stored_status_not_the_current_one(api):
    post(api, {"external_user_id": "a"}, key="first")
    existing = post(api, {"external_user_id": "a"}, key="second")  # the user exists now: 200

    replayed = post(api, {"external_user_id": "a"}, key="first")

    assert existing.status_code == 200
    assert replayed.status_code == 201
    assert replayed["Idempotency-Replayed"] == "true"


def test_a_validation_error_is_replayed_identically(api):
    first = post(api, {"external_user_id": "a", "colour": "red"})

    again = post(api, {"external_user_id": "a", "colour": "red"})

    assert (first.status_code, again.status_code) == (400, 400)
    assert envelope(again)["code"] == "VALIDATION_ERROR"
    assert again.content == first.content
    assert again["Idempotency-Replayed"] == "true"
    assert again["Content-Type"] == "application/json"
    assert not MarketplaceUser.objects.exists()


def test_a_malformed_body_is_replayed_as_the_same_error(api):
    first = api.post(
        "/api/v1/users", "{oops", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    again = api.post(
        "/api/v1/users", "{oops", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert envelope(first)["code"] == "INVALID_JSON"
    assert (again.status_code, again.content) == (400, first.content)
    assert again["Idempotency-Replayed"] == "true"


def test_same_key_with_another_body_is_a_409_and_runs_nothing(api):
    post(api, {"external_user_id": "a"})

    response = post(api, {"external_user_id": "b"})

    assert response.status_code == 409
    assert envelope(response)["code"] == "IDEMPOTENCY_KEY_REUSED"
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


def test_a_request_still_in_progress_is_a_409_with_retry_after(api):
    first = post(api, {"external_user_id": "a"})
    IdempotencyRecord.objects.update(
        status=IdempotencyRecord.Status.IN_PROGRESS, response_status=None, response_body=""
    )

    response = post(api, {"external_user_id": "a"})

    assert first.status_code == 201
    assert response.status_code == 409
    assert envelope(response)["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS"
    assert response["Retry-After"] == "1"


def test_the_same_key_on_another_api_key_of_the_marketplace_is_independent(
    make_client, marketplace
):
    mine, colleague = make_client(marketplace), make_client(marketplace)
    post(mine, {"external_user_id": "a"}, key="shared")

    other_body = post(colleague, {"external_user_id": "b"}, key="shared")
    same_body = post(colleague, {"external_user_id": "a"}, key="shared-2")

    assert other_body.status_code == 201
    assert "Idempotency-Replayed" not in other_body
    assert same_body.status_code == 200  # ran for real: the user already existed
    assert "Idempotency-Replayed" not in same_body
    assert IdempotencyRecord.objects.count() == 3


def test_keys_of_another_marketplace_never_replay_its_answers(
    make_client, marketplace, other_marketplace
):
    mine, theirs = make_client(marketplace), make_client(other_marketplace)
    first = post(mine, {"external_user_id": "a"})

    response = post(theirs, {"external_user_id": "a"})

    assert response.status_code == 201
    assert "Idempotency-Replayed" not in response
    assert response.json()["id"] != first.json()["id"]
    assert MarketplaceUser.objects.filter(external_user_id="a").count() == 2


def test_keys_are_scoped_per_path(api, make_user, marketplace):
    user = make_user(marketplace)
    post(api, {"external_user_id": "a"}, key="same")

    response = post(
        api,
        {"amount": "1.00", "currency": "USD", "reason": "x"},
        key="same",
        path=f"/api/v1/users/{user.public_id}/balance/credit",
    )

    assert response.status_code == 200
    assert "Idempotency-Replayed" not in response


def test_a_path_longer_than_the_record_column_is_still_scoped_and_replayed(api):
    path = "/api/v1/users/usr_" + "x" * 600 + "/balance/credit"
    body = {"amount": "1.00", "currency": "USD", "reason": "x"}

    first = post(api, body, key="long", path=path)
    again = post(api, body, key="long", path=path)
    other = post(api, body, key="long", path=path.replace("x" * 600, "y" * 600))

    assert first.status_code == 404
    assert (again.status_code, again["Idempotency-Replayed"]) == (404, "true")
    assert "Idempotency-Replayed" not in other
    assert IdempotencyRecord.objects.count() == 2


def test_an_unauthenticated_retry_gets_401_not_the_stored_answer(api):
    post(api, {"external_user_id": "a"})

    response = post(APIClient(), {"external_user_id": "a"})

    assert response.status_code == 401
    assert "Idempotency-Replayed" not in response
    assert "usr_" not in response.content.decode()


def test_a_caller_without_the_scope_gets_403_not_the_stored_answer(api, make_client, marketplace):
    post(api, {"external_user_id": "a"})

    response = post(make_client(marketplace, ["read"]), {"external_user_id": "a"})

    assert response.status_code == 403
    assert "Idempotency-Replayed" not in response


def test_refused_requests_claim_no_key(make_client, marketplace):
    reader = make_client(marketplace, ["read"])

    post(APIClient(), {"external_user_id": "a"})
    post(reader, {"external_user_id": "a"})

    assert not IdempotencyRecord.objects.exists()


@override_settings(RATE_LIMIT_REQUESTS=1)
def test_a_rate_limited_request_claims_no_key_and_runs_later(api):
    api.get("/api/v1/users")

    limited = post(api, {"external_user_id": "a"})

    assert limited.status_code == 429
    assert not IdempotencyRecord.objects.exists()
    assert not MarketplaceUser.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é"])
def test_malformed_keys_are_refused_and_run_nothing(api, key):
    response = post(api, {"external_user_id": "a"}, key=key)

    assert response.status_code == 400
    assert envelope(response)["code"] == "VALIDATION_ERROR"
    assert not MarketplaceUser.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_a_key_of_255_printable_characters_is_accepted(api):
    response = post(api, {"external_user_id": "a"}, key="~" * 255)

    assert response.status_code == 201


def test_reads_ignore_the_header(api):
    api.get("/api/v1/users", HTTP_IDEMPOTENCY_KEY="k")

    assert not IdempotencyRecord.objects.exists()


def test_a_5xx_answer_is_not_stored_so_a_retry_runs_again(api, monkeypatch):
    def provider_down(**kwargs):
        raise UpstreamError("provider down", retryable=True)

    monkeypatch.setattr("orchestrator.api.users.user_create", provider_down)
    failed = post(api, {"external_user_id": "a"})
    monkeypatch.undo()

    retried = post(api, {"external_user_id": "a"})

    assert failed.status_code == 502
    assert retried.status_code == 201
    assert "Idempotency-Replayed" not in retried


def test_a_new_api_key_is_never_stored_and_never_replayed(api):
    body = {"name": "backend", "scopes": ["read"]}
    first = post(api, body, key="new-key", path="/api/v1/auth/api-keys")
    raw = first.json()["key"]

    again = post(api, body, key="new-key", path="/api/v1/auth/api-keys")

    assert first.status_code == again.status_code == 201
    assert again["Idempotency-Replayed"] == "true"
    assert again.json() == {**first.json(), "key": REDACTED}
    assert raw not in IdempotencyRecord.objects.get().response_body
    assert raw not in again.content.decode()


@override_settings(IDEMPOTENCY_TTL_HOURS=1)
def test_records_keep_the_configured_lifetime(api):
    post(api, {"external_user_id": "a"})

    record = IdempotencyRecord.objects.get()

    assert timedelta(minutes=59) < record.expires_at - record.created_at <= timedelta(hours=1)


def test_an_expired_key_is_free_again(api):
    post(api, {"external_user_id": "a"})
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    again = post(api, {"external_user_id": "b"})

    assert again.status_code == 201
    assert "Idempotency-Replayed" not in again
    assert MarketplaceUser.objects.filter(external_user_id="b").exists()


def test_the_cleanup_task_deletes_only_expired_records(api):
    post(api, {"external_user_id": "a"}, key="old")
    post(api, {"external_user_id": "b"}, key="fresh")
    IdempotencyRecord.objects.filter(key="old").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    deleted = idempotency_cleanup.delay().get()

    assert deleted == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_with_one_key_execute_once(make_key, marketplace):
    _, raw = make_key(marketplace, ["write"])
    start = threading.Barrier(20)

    def call(_: int) -> tuple[int, str, bool, dict]:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
            start.wait(timeout=10)
            response = post(client, {"external_user_id": "race"}, key="race-key")
            body = response.json()
            code = body["error"]["code"] if "error" in body else ""
            return response.status_code, code, response.has_header("Idempotency-Replayed"), body
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))

    assert MarketplaceUser.objects.filter(external_user_id="race").count() == 1
    user = MarketplaceUser.objects.get(external_user_id="race")
    assert AuditLog.objects.filter(action="user.created", object_id=user.public_id).count() == 1
    assert Event.objects.filter(type="user.created", aggregate_id=user.public_id).count() == 1
    fresh = [r for r in results if r[0] == 201 and not r[2]]
    replays = [r for r in results if r[0] == 201 and r[2]]
    in_progress = [r for r in results if r[0] == 409 and r[1] == "IDEMPOTENCY_KEY_IN_PROGRESS"]
    assert len(fresh) == 1
    assert len(fresh) + len(replays) + len(in_progress) == 20
    assert all(r[3] == fresh[0][3] for r in replays)
    assert fresh[0][3]["id"] == user.public_id


def test_an_expired_record_is_taken_over_in_place(api):
    post(api, {"external_user_id": "a"})
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    post(api, {"external_user_id": "b"})

    record = IdempotencyRecord.objects.get()  # one row per scope, the expired one reused
    assert record.status == IdempotencyRecord.Status.COMPLETED
    assert record.expires_at > timezone.now()
    assert '"b"' in record.response_body


def test_claiming_a_new_key_is_one_statement(make_key, marketplace):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from orchestrator.api.idempotency import idempotency_begin

    key, _ = make_key(marketplace)
    with CaptureQueriesContext(connection) as queries:
        record = idempotency_begin(
            api_key=key, method="POST", path="/api/v1/users", key="one", body=b"{}"
        )

    assert len(queries.captured_queries) == 1
    assert isinstance(record, IdempotencyRecord)
    assert IdempotencyRecord.objects.get(pk=record.pk).status == "in_progress"
