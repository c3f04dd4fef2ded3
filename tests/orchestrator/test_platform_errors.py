"""One error body for every failure, the right status, request ids and rate limits."""

import pytest
from django.db import connection, transaction
from django.db.utils import IntegrityError
from django.test import override_settings
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient

from orchestrator.api.views import ApiView
from orchestrator.events import DomainEvent, publish
from orchestrator.models import AuditLog, Event, MarketplaceUser

pytestmark = pytest.mark.django_db


class CrashApi(ApiView):
    required_scope = "read"

    def get(self, request: Request) -> Response:
        raise RuntimeError("secret internals: password=hunter2")


urlpatterns = [
    path("api/v1/crash", CrashApi.as_view()),
    path("", include("orchestrator.urls")),
]


def envelope(response):
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def test_unknown_api_route_is_a_404_envelope(api):
    error = envelope(api.get("/api/v1/nowhere"))

    assert error["code"] == "NOT_FOUND"


def test_wrong_method_is_a_405_envelope(api):
    response = api.delete("/api/v1/users")

    assert response.status_code == 405
    assert envelope(response)["code"] == "METHOD_NOT_ALLOWED"


@override_settings(ROOT_URLCONF=__name__)
def test_a_crash_is_a_500_envelope_without_internals(api):
    api.raise_request_exception = False

    response = api.get("/api/v1/crash")

    assert response.status_code == 500
    assert envelope(response)["code"] == "INTERNAL_ERROR"
    assert b"hunter2" not in response.content
    assert b"Traceback" not in response.content


def test_malformed_json_is_a_400_and_writes_nothing(api):
    response = api.post("/api/v1/users", "{oops", content_type="application/json")

    assert response.status_code == 400
    assert envelope(response)["code"] == "INVALID_JSON"
    assert not MarketplaceUser.objects.exists()


def test_a_non_json_body_is_a_400(api):
    response = api.post("/api/v1/users", "external_user_id=a", content_type="text/plain")

    assert response.status_code == 400
    assert envelope(response)["code"] == "INVALID_JSON"


def test_a_json_array_body_is_a_validation_error(api):
    response = api.post("/api/v1/users", "[1, 2]", content_type="application/json")

    assert response.status_code == 400
    assert envelope(response)["code"] == "VALIDATION_ERROR"


def test_unknown_fields_and_wrong_types_are_named(api):
    response = api.post(
        "/api/v1/users",
        {"external_user_id": ["x"], "type": "GHOST", "colour": "red"},
        format="json",
    )

    error = envelope(response)
    assert response.status_code == 400
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["details"]["fields"]) == {"external_user_id", "type", "colour"}
    assert not MarketplaceUser.objects.exists()


def test_a_body_over_one_mebibyte_is_a_413(api):
    big = '{"external_user_id": "' + "x" * (1024 * 1024) + '"}'

    response = api.post("/api/v1/users", big, content_type="application/json")

    assert response.status_code == 413
    assert envelope(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert not MarketplaceUser.objects.exists()


def test_request_id_is_echoed_or_made(api):
    echoed = api.get("/api/v1/users", HTTP_X_REQUEST_ID="abc-123")
    made = api.get("/api/v1/users")
    hostile = api.get("/api/v1/users", HTTP_X_REQUEST_ID="x" * 500)

    assert echoed["X-Request-ID"] == "abc-123"
    assert made["X-Request-ID"].startswith("req_")
    assert hostile["X-Request-ID"].startswith("req_")


def test_request_id_and_actor_reach_the_audit_log(api):
    response = api.post(
        "/api/v1/users", {"external_user_id": "a"}, format="json", HTTP_X_REQUEST_ID="trace-1"
    )

    row = AuditLog.objects.get(action="user.created")
    assert (row.request_id, row.actor_kind, row.object_id) == (
        "trace-1",
        "api_key",
        response.json()["id"],
    )
    assert row.ip == "127.0.0.1"
    assert Event.objects.get(type="user.created").request_id == "trace-1"


@override_settings(RATE_LIMIT_REQUESTS=3)
def test_rate_limit_headers_and_429_with_retry_after(api, make_client, marketplace):
    answers = [api.get("/api/v1/users") for _ in range(4)]
    other_key = make_client(marketplace).get("/api/v1/users")

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a["X-RateLimit-Limit"] == "3" for a in answers)
    limited = answers[3]
    assert envelope(limited)["code"] == "RATE_LIMITED"
    assert int(limited["Retry-After"]) >= 1
    assert other_key.status_code == 200  # limits are per API key


@override_settings(RATE_LIMIT_REQUESTS=1)
def test_a_rate_limited_post_is_not_executed(api):
    api.get("/api/v1/users")

    response = api.post("/api/v1/users", {"external_user_id": "a"}, format="json")

    assert response.status_code == 429
    assert not MarketplaceUser.objects.exists()


def test_health_is_public_and_readiness_checks_database_and_redis():
    client = APIClient()

    health = client.get("/api/v1/health")
    ready = client.get("/api/v1/health/ready")

    assert health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"]["status"] == "ok"
    assert ready.json()["checks"]["redis"]["status"] == "ok"


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_readiness_is_503_when_redis_is_down():
    response = APIClient().get("/api/v1/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["status"] == "error"


def test_openapi_document_and_interactive_docs():
    client = APIClient()

    schema = client.get("/api/v1/openapi.json")
    docs = client.get("/api/v1/docs")

    assert schema.json()["openapi"].startswith("3.")
    assert "/api/v1/users" in schema.json()["paths"]
    assert "/api/v1/users/{user_id}/balance" in schema.json()["paths"]
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


class Probe(DomainEvent):
    type = "probe.happened"
    aggregate_type = "probe"


@pytest.mark.django_db(transaction=True)
def test_publish_outside_a_transaction_is_refused(marketplace):
    with pytest.raises(RuntimeError, match="inside the transaction"):
        publish(Probe(marketplace_id=marketplace.pk, aggregate_id="p_1"))

    assert not Event.objects.filter(type="probe.happened").exists()


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["orchestrator_event", "orchestrator_auditlog"])
@pytest.mark.parametrize("statement", ["UPDATE {} SET created_at = now()", "DELETE FROM {}"])
def test_events_and_audit_rows_are_append_only(api, table, statement):
    api.post("/api/v1/users", {"external_user_id": "a"}, format="json")

    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement.format(table))

    assert Event.objects.exists()
    assert AuditLog.objects.exists()
