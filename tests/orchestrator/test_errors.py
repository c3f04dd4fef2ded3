"""One error body for every failure, with the right status; request ids in and out."""

import json
import logging

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient

from orchestrator.api.views import ApiView
from orchestrator.context import RequestIdLogFilter
from orchestrator.models import IdempotencyRecord, MarketplaceUser
from tests.orchestrator.support import envelope, protected_routes, route_id, row_counts

pytestmark = pytest.mark.django_db

SECRET = "password=hunter2"


class CrashApi(ApiView):
    required_scope = "read"
    method_scopes = {"POST": "write"}

    def get(self, request: Request) -> Response:
        raise RuntimeError(f"secret internals: {SECRET}")

    def post(self, request: Request) -> Response:
        raise RuntimeError(f"secret internals: {SECRET}")


# The real URLs plus a route that crashes, for the 500 tests (ROOT_URLCONF=__name__).
urlpatterns = [
    path("api/v1/test-crash", CrashApi.as_view()),
    path("", include("orchestrator.urls")),
]


@pytest.fixture
def crashing(api):
    api.raise_request_exception = False
    with override_settings(ROOT_URLCONF=__name__):
        yield api


def create(client, body, **extra):
    return client.post("/api/v1/users", body, content_type="application/json", **extra)


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/nowhere", "/api/v1/", "/api/v1/users/"])
def test_an_unknown_api_route_is_a_404_envelope(api, path):
    response = api.get(path)

    assert response.status_code == 404
    assert envelope(response)["code"] == "NOT_FOUND"
    assert envelope(response)["details"] == {"path": path}


@override_settings(DEBUG=True)
def test_an_unknown_route_is_an_envelope_even_with_debug_on(api):
    response = api.get("/api/v1/nowhere")

    assert response.status_code == 404
    assert envelope(response)["code"] == "NOT_FOUND"


def test_an_unknown_object_is_a_404_envelope_naming_its_kind(api):
    response = api.get("/api/v1/users/usr_doesnotexist")

    assert response.status_code == 404
    assert envelope(response)["code"] == "USER_NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path"),
    [("delete", "/api/v1/users"), ("put", "/api/v1/auth/me"), ("post", "/api/v1/health")],
)
def test_a_wrong_method_is_a_405_envelope(api, method, path):
    response = getattr(api, method)(path)

    assert response.status_code == 405
    assert envelope(response)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response["Allow"]


def test_a_crash_is_a_500_envelope_without_internals(crashing):
    response = crashing.get("/api/v1/test-crash", HTTP_X_REQUEST_ID="crash-1")

    assert response.status_code == 500
    assert envelope(response)["code"] == "INTERNAL_ERROR"
    assert envelope(response)["details"] == {}
    assert SECRET.encode() not in response.content
    assert b"Traceback" not in response.content
    assert b"RuntimeError" not in response.content
    assert response["X-Request-ID"] == "crash-1"


@override_settings(DEBUG=True)
def test_a_crash_leaks_nothing_even_with_debug_on(crashing):
    response = crashing.get("/api/v1/test-crash")

    assert response.status_code == 500
    assert envelope(response)["code"] == "INTERNAL_ERROR"
    assert SECRET.encode() not in response.content


def test_a_crash_frees_its_idempotency_key_so_a_retry_runs_again(crashing):
    first = crashing.post("/api/v1/test-crash", {}, format="json", HTTP_IDEMPOTENCY_KEY="boom")

    retried = crashing.post("/api/v1/test-crash", {}, format="json", HTTP_IDEMPOTENCY_KEY="boom")

    assert (first.status_code, retried.status_code) == (500, 500)
    assert envelope(retried)["code"] == "INTERNAL_ERROR"
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{oops", "application/json"),
        ('{"external_user_id": "a"', "application/json"),
        ("external_user_id=a", "text/plain"),
        ("external_user_id=a", "application/x-www-form-urlencoded"),
        (b"\xff\xfe{}", "application/json"),
    ],
    ids=["garbage", "truncated", "text", "form", "not-utf8"],
)
def test_a_body_that_is_not_json_is_a_400_and_writes_nothing(api, body, content_type):
    before = row_counts()

    response = api.post("/api/v1/users", body, content_type=content_type)

    assert response.status_code == 400
    assert envelope(response)["code"] == "INVALID_JSON"
    assert row_counts() == before


def test_json_is_accepted_whatever_the_content_type_says(api):
    response = create(api, '{"external_user_id": "a"}', CONTENT_TYPE="text/plain")

    assert response.status_code == 201


@pytest.mark.parametrize("body", ["[1, 2]", "null", '"text"', "42"])
def test_a_json_body_that_is_not_an_object_is_a_validation_error(api, body):
    response = create(api, body)

    assert response.status_code == 400
    assert envelope(response)["code"] == "VALIDATION_ERROR"
    assert "non_field_errors" in envelope(response)["details"]["fields"]
    assert not MarketplaceUser.objects.exists()


def test_unknown_fields_and_wrong_types_are_all_named(api):
    body = {"external_user_id": ["x"], "type": "GHOST", "colour": "red", "size": 1}

    response = create(api, json.dumps(body))

    error = envelope(response)
    assert response.status_code == 400
    assert error["code"] == "VALIDATION_ERROR"
    assert set(error["details"]["fields"]) == {"external_user_id", "type", "colour", "size"}
    assert error["details"]["fields"]["colour"] == ["Unknown field."]
    assert "colour" in error["message"]
    assert not MarketplaceUser.objects.exists()


@pytest.mark.parametrize("value", [12, 1e20, True, {"id": "a"}, ["a"]])
def test_a_non_string_for_a_string_field_is_a_validation_error(api, value):
    response = create(api, json.dumps({"external_user_id": value}))

    assert response.status_code == 400
    assert set(envelope(response)["details"]["fields"]) == {"external_user_id"}
    assert not MarketplaceUser.objects.exists()


def test_a_missing_required_field_is_named(api):
    response = create(api, json.dumps({"email": "a@example.com"}))

    assert response.status_code == 400
    assert envelope(response)["details"]["fields"] == {
        "external_user_id": ["This field is required."]
    }


def test_a_body_over_one_mebibyte_is_a_413_and_writes_nothing(api):
    assert settings.API_MAX_BODY_BYTES == 1024 * 1024
    big = '{"external_user_id": "' + "x" * (1024 * 1024) + '"}'
    before = row_counts()

    response = create(api, big, HTTP_IDEMPOTENCY_KEY="big")

    assert response.status_code == 413
    assert envelope(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert envelope(response)["details"] == {"max_bytes": 1024 * 1024}
    assert row_counts() == before


def test_a_body_of_exactly_one_mebibyte_is_read(api):
    prefix, suffix = '{"external_user_id": "', '"}'
    body = prefix + "x" * (1024 * 1024 - len(prefix) - len(suffix)) + suffix
    assert len(body) == 1024 * 1024

    response = create(api, body)

    assert response.status_code == 400
    assert envelope(response)["code"] == "VALIDATION_ERROR"  # too long an id, but it was read


def test_a_non_numeric_content_length_is_a_400_envelope(api):
    response = api.generic(
        "POST", "/api/v1/users", b"{}", content_type="application/json", CONTENT_LENGTH="ten"
    )

    assert response.status_code == 400
    assert envelope(response)["code"] == "INVALID_REQUEST"


def test_an_incoming_request_id_is_echoed(api):
    response = api.get("/api/v1/users", HTTP_X_REQUEST_ID="abc-123.x:y_z")

    assert response["X-Request-ID"] == "abc-123.x:y_z"


@pytest.mark.parametrize("incoming", [None, "", "x" * 101, "has space", 'quote"d', "ünï"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(api, incoming):
    extra = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}

    first = api.get("/api/v1/users", **extra)
    second = api.get("/api/v1/users", **extra)

    assert first["X-Request-ID"].startswith("req_")
    assert len(first["X-Request-ID"]) > len("req_") + 16
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/users", None, 401),
        ("/api/v1/nowhere", None, 404),
        ("/api/v1/users", "{oops", 400),
        ("/api/v1/users", "x" * (1024 * 1024 + 1), 413),
        ("/api/v1/health", None, 200),
    ],
)
def test_every_answer_carries_the_request_id(api, path, body, status):
    client = APIClient() if status == 401 else api

    if body is None:
        response = client.get(path, HTTP_X_REQUEST_ID="trace-7")
    else:
        response = client.post(
            path, body, content_type="application/json", HTTP_X_REQUEST_ID="trace-7"
        )

    assert response.status_code == status
    assert response["X-Request-ID"] == "trace-7"


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("idempotency_key", [None, "deep"])
def test_json_nested_deeper_than_the_stack_is_a_400(api, idempotency_key):
    extra = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = create(api, DEEP, **extra)

    assert response.status_code == 400
    assert envelope(response)["code"] == "INVALID_JSON"


HOSTILE_BODIES = [
    DEEP,
    '{"external_user_id": "\\u0000", "name": "\\u0000", "reason": "\\u0000"}',
    json.dumps({"external_user_id": "x" * 10_000, "email": "x" * 10_000, "name": "x" * 10_000}),
    json.dumps({"amount": "9" * 5000, "currency": "\u0000", "reason": "x", "scopes": ["\u0000"]}),
    json.dumps({"amount": 1e308, "expires_at": "99999-01-01T00:00:00Z", "reference": 1}),
    '{"a": NaN}',
    "[]",
]
HOSTILE_QUERIES = [
    "?limit=" + "9" * 5000,
    "?cursor=%00",
    "?type=%00&account=%00&currency=%00",
    "?created_after=9999-12-31T23:59:59-14:00&created_before=0001-01-01T00:00:00%2B14:00",
]


@pytest.mark.parametrize(
    "route", [r for r in protected_routes() if r.view is not None], ids=route_id
)
def test_no_route_answers_hostile_input_with_a_5xx(api, make_user, make_key, marketplace, route):
    # Real ids of the caller's own objects, so the input reaches validation behind the lookup.
    ids = {
        "user_id": make_user(marketplace).public_id,
        "key_id": make_key(marketplace)[0].public_id,
    }
    api.raise_request_exception = False
    answers = []

    for method in route.methods:
        for n, body in enumerate(HOSTILE_BODIES):
            answers.append(
                api.generic(
                    method.upper(),
                    route.path(**ids),
                    body,
                    content_type="application/json",
                    HTTP_IDEMPOTENCY_KEY=f"hostile-{n}",
                )
            )
        answers += [api.generic(method.upper(), route.path(**ids) + q) for q in HOSTILE_QUERIES]

    assert answers
    assert [a.status_code for a in answers if a.status_code >= 500] == []
    assert all(a.status_code < 300 or envelope(a) for a in answers)


@pytest.mark.parametrize(
    ("route", "method"),
    [(r, m) for r in protected_routes() if r.params and r.view is not None for m in r.methods],
    ids=lambda value: value if isinstance(value, str) else route_id(value),
)
def test_an_id_holding_a_nul_byte_is_a_404(api, route, method):
    path = route.path(**dict.fromkeys(route.params, "usr_%00"))

    response = api.generic(
        method.upper(), path, "{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY="nul"
    )

    assert response.status_code == 404
    assert envelope(response)["code"].endswith("NOT_FOUND")
    assert not IdempotencyRecord.objects.exists()


def test_django_s_log_line_for_a_failed_request_carries_its_request_id(api, caplog):
    caplog.handler.addFilter(RequestIdLogFilter())

    with caplog.at_level(logging.WARNING, logger="django.request"):
        api.get("/api/v1/users/usr_missing", HTTP_X_REQUEST_ID="log-me")

    lines = [r for r in caplog.records if r.name == "django.request"]
    assert lines
    assert {getattr(r, "request_id", None) for r in lines} == {"log-me"}
