"""AirtmClient against a mocked Airtm (responses): requests, parsing, errors, exactly-once.

Every response body is written as JSON text with exact numbers (see `wire`), so a test
fails if the client ever reads an amount through a float.
"""

import base64
import json
import logging
import re
from collections.abc import Iterator
from contextvars import Context, copy_context
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses
from django.db import DatabaseError
from django.test import override_settings
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from orchestrator.context import set_request_id
from providers.clients.airtm import AirtmClient, Payin
from providers.clients.errors import (
    ProviderNotFoundError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.clients.ratelimit import RateLimiter
from providers.models import ProviderCall
from providers.recording import record_call

pytestmark = pytest.mark.django_db

BASE = "http://127.0.0.1:9/airtm/v2"
API_KEY = "ak_live_0123456789"
API_SECRET = "sk-NEVER-STORE-THIS-9f8e7d"
BASIC = base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()


def wire(value: Any) -> str:
    """JSON text with Decimals written as bare numbers, digit for digit (like Airtm's)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{wire(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(wire(v) for v in value) + "]"
    return json.dumps(value)


def payin_data(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "3f1c0a7e-payin",
        "code": "topup_1",
        "hash": "abc",
        "status": "CREATED",
        "amount": Decimal("10.50"),
        "netAmount": Decimal("10.20"),
        "airtmFee": Decimal("0.30"),
        "description": "Top-up",
        "items": [{"id": "i1", "description": "Top-up", "amount": Decimal("10.50"), "quantity": 1}],
        "airtmUserId": None,
        "airtmUserEmail": None,
        "failureReason": None,
        "confirmationUri": "https://shop.test/ok",
        "cancelUri": "https://shop.test/cancel",
        "createdAt": "2025-05-01T12:00:00Z",
        "updatedAt": "2025-05-01T14:00:01.5+02:00",
    }
    data.update(fields)
    return data


def payout_data(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "9a8b-payout",
        "bulkPayoutId": None,
        "hash": "h",
        "code": "wd_1",
        "airtmUserId": "u-1",
        "airtmUserEmail": "ana@example.com",
        "requireIdVerified": False,
        "notes": "Your earnings",
        "internalNote": None,
        "status": "CREATED",
        "grossAmount": Decimal("25.00"),
        "amount": Decimal("25.00"),
        "netAmount": Decimal("24.50"),
        "airtmFee": Decimal("0.50"),
        "enterpriseFee": Decimal("0"),
        "reasonCode": None,
        "reasonDescription": None,
        "createdAt": "2025-05-01T12:00:00Z",
        "updatedAt": None,
    }
    data.update(fields)
    return data


def error_body(code: str, message: str = "Refused") -> str:
    return json.dumps({"code": code, "message": message, "data": {}})


def read_timeout() -> requests.exceptions.ReadTimeout:
    return requests.exceptions.ReadTimeout("Read timed out. (read timeout=10.0)")


def refused() -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens: the request never left."""
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


def dropped() -> requests.exceptions.ConnectionError:
    """The connection broke after the request was sent: Airtm may have applied it."""
    reset = ConnectionResetError(104, "Connection reset by peer")
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", reset))


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> AirtmClient:
    return AirtmClient(
        base_url=f"{BASE}/",
        api_key=API_KEY,
        api_secret=API_SECRET,
        checkout_url="https://checkout.test/payin/{id}",
        sleep=sleeps.append,
    )


def sent(mock: responses.RequestsMock, method: str = "", path: str = "") -> list[Any]:
    """The requests sent (optionally only `method` to `path`)."""
    return [
        call.request
        for call in mock.calls
        if (not method or call.request.method == method)
        and (not path or call.request.url == f"{BASE}{path}")
    ]


def body_of(request: Any) -> tuple[str, Any]:
    text = request.body.decode() if isinstance(request.body, bytes) else request.body
    return text, json.loads(text, parse_float=Decimal)


# Requests and parsing ------------------------------------------------------------------


def test_get_user_sends_an_authenticated_get_with_the_email_encoded_in_the_path(client, mock):
    mock.get(
        f"{BASE}/users/ana%2Bwork%40example.com",
        body=wire(
            {
                "id": "u-1",
                "status": "ACTIVE",
                "primaryEmail": True,
                "firstName": "Ana",
                "lastName": "Díaz",
                "country": "COL",
                "isVerified": True,
            }
        ),
    )

    user = client.get_user("ana+work@example.com")

    assert user is not None
    assert (user.id, user.status, user.email) == ("u-1", "active", "ana+work@example.com")
    assert (user.first_name, user.last_name, user.country) == ("Ana", "Díaz", "COL")
    assert user.primary_email is True
    assert user.is_verified is True
    request = sent(mock)[0]
    assert request.headers["Authorization"] == f"Basic {BASIC}"
    assert request.headers["Accept"] == "application/json"
    assert request.body is None


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, error_body("415902", "Item not found")), (400, error_body("415059", "Not found"))],
)
def test_get_user_is_none_when_airtm_knows_no_such_user(client, mock, status, body):
    mock.get(f"{BASE}/users/nobody%40example.com", status=status, body=body)

    assert client.get_user("nobody@example.com") is None
    assert len(sent(mock)) == 1


def test_create_payin_sends_exactly_the_schema_fields_with_two_decimal_amounts(client, mock):
    mock.post(f"{BASE}/payins", status=201, body=wire(payin_data()))

    payin = client.create_payin(
        code="topup_1",
        amount=Decimal("10.5"),
        description="Top-up",
        confirmation_uri="https://shop.test/ok",
        cancel_uri="https://shop.test/cancel",
    )

    request = sent(mock)[0]
    text, body = body_of(request)
    assert body == {
        "code": "topup_1",
        "amount": Decimal("10.50"),
        "description": "Top-up",
        "items": [{"description": "Top-up", "amount": Decimal("10.50"), "quantity": 1}],
        "confirmationUri": "https://shop.test/ok",
        "cancelUri": "https://shop.test/cancel",
    }
    assert re.findall(r'"amount":([^,}]+)', text) == ["10.50", "10.50"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Basic {BASIC}"
    assert payin.id == "3f1c0a7e-payin"
    assert payin.amount == Decimal("10.50")
    assert client.checkout_url(payin.id) == "https://checkout.test/payin/3f1c0a7e-payin"


def test_amounts_are_read_exactly_never_through_a_float(client, mock):
    # In binary floating point 0.1 + 0.2 != 0.3, and 9007199254740993 is not representable.
    mock.get(
        f"{BASE}/payins/p1",
        body=wire(
            payin_data(amount=Decimal("0.3"), netAmount=Decimal("0.2"), airtmFee=Decimal("0.1"))
        ),
    )
    mock.get(
        f"{BASE}/payouts/p2",
        body=wire(payout_data(grossAmount=Decimal("9007199254740993.01"), amount=7)),
    )

    payin = client.get_payin("p1")
    payout = client.get_payout("p2")

    assert payin.net_amount is not None
    assert payin.airtm_fee is not None
    assert payin.net_amount + payin.airtm_fee == payin.amount == Decimal("0.3")
    assert payout.gross_amount == Decimal("9007199254740993.01")
    assert payout.amount == Decimal(7)


def test_payin_fields_statuses_and_timestamps_are_parsed(client, mock):
    mock.get(
        f"{BASE}/payins/p1",
        body=wire(
            payin_data(
                status="processing",
                airtmUserId="u-9",
                airtmUserEmail="payer@example.com",
                failureReason=None,
            )
        ),
    )

    payin = client.get_payin("p1")

    assert payin.status == "PROCESSING"
    assert (payin.code, payin.description) == ("topup_1", "Top-up")
    assert (payin.airtm_user_id, payin.airtm_user_email) == ("u-9", "payer@example.com")
    assert payin.confirmation_uri == "https://shop.test/ok"
    assert payin.cancel_uri == "https://shop.test/cancel"
    assert payin.created_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert payin.updated_at == datetime(
        2025, 5, 1, 14, 0, 1, 500000, tzinfo=timezone(timedelta(hours=2))
    )
    assert payin.raw["hash"] == "abc"


def test_unknown_statuses_are_kept_and_absent_timestamps_are_none(client, mock):
    mock.get(
        f"{BASE}/payouts/p1",
        body=wire(payout_data(status="Bridge_User_Signup_Pending", createdAt=None)),
    )

    payout = client.get_payout("p1")

    assert payout.status == "BRIDGE_USER_SIGNUP_PENDING"
    assert payout.created_at is None
    assert payout.updated_at is None


def test_find_payin_looks_up_by_code_and_is_none_when_absent(client, mock):
    mock.get(f"{BASE}/payins/by-code/topup_1", body=wire(payin_data()))
    mock.get(f"{BASE}/payins/by-code/topup_2", status=404, body=error_body("415031"))
    mock.get(f"{BASE}/payins/by-code/topup_3", status=400, body=error_body("415902"))

    found = client.find_payin("topup_1")

    assert found is not None
    assert found.code == "topup_1"
    assert client.find_payin("topup_2") is None
    assert client.find_payin("topup_3") is None


def test_get_payin_raises_not_found(client, mock):
    mock.get(f"{BASE}/payins/nope", status=400, body=error_body("415031", "Payin not found"))

    with pytest.raises(ProviderNotFoundError) as caught:
        client.get_payin("nope")

    assert caught.value.reason_code == "415031"
    assert len(sent(mock)) == 1  # a definitive answer is not retried


def test_cancel_payin_deletes_then_returns_the_payin_as_it_is_now(client, mock):
    mock.delete(f"{BASE}/payins/p1", status=204)
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data(status="CANCELED")))

    payin = client.cancel_payin("p1")

    assert payin.status == "CANCELED"
    assert [(r.method, r.url) for r in sent(mock)] == [
        ("DELETE", f"{BASE}/payins/p1"),
        ("GET", f"{BASE}/payins/p1"),
    ]


@pytest.mark.parametrize("commit", [False, True])
def test_create_payout_sends_exactly_the_schema_fields(client, mock, commit):
    status = "COMMITTED" if commit else "CREATED"
    mock.post(f"{BASE}/payouts", status=201, body=wire(payout_data(status=status)))

    payout = client.create_payout(
        code="wd_1",
        email="ana@example.com",
        amount=Decimal("25"),
        notes="Your earnings",
        commit=commit,
    )

    text, body = body_of(sent(mock)[0])
    assert body == {
        "code": "wd_1",
        "airtmUserEmail": "ana@example.com",
        "amount": Decimal("25.00"),
        "notes": "Your earnings",
        "commit": commit,
    }
    assert '"amount":25.00' in text
    assert payout.status == status
    assert (payout.gross_amount, payout.amount) == (Decimal("25.00"), Decimal("25.00"))
    assert (payout.net_amount, payout.airtm_fee) == (Decimal("24.50"), Decimal("0.50"))
    assert payout.airtm_user_email == "ana@example.com"
    assert payout.code == "wd_1"


def test_payout_without_gross_amount_takes_the_amount(client, mock):
    data = payout_data(amount=Decimal("3.10"))
    del data["grossAmount"]
    mock.get(f"{BASE}/payouts/p1", body=wire(data))

    assert client.get_payout("p1").gross_amount == Decimal("3.10")


@pytest.mark.parametrize(
    "amount", [Decimal("10.005"), Decimal("0"), Decimal("-1.00"), Decimal("NaN")]
)
def test_amounts_airtm_cannot_take_are_refused_before_sending(client, mock, amount):
    with pytest.raises(ValueError, match="Airtm"):
        client.create_payout(code="wd_1", email="a@example.com", amount=amount, notes="n")
    with pytest.raises(ValueError, match="Airtm"):
        client.create_payin(
            code="t", amount=amount, description="d", confirmation_uri="u", cancel_uri="u"
        )

    assert sent(mock) == []


def test_commit_payout_posts_then_returns_the_payout(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", status=204)
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="COMMITTED")))

    payout = client.commit_payout("p1")

    assert payout.status == "COMMITTED"
    commit = sent(mock, "POST")[0]
    assert commit.url == f"{BASE}/payouts/p1/commit"
    assert commit.body is None


def test_find_payout_get_payout_and_cancel_payout(client, mock):
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data()))
    mock.get(f"{BASE}/payouts/by-code/wd_2", status=400, body=error_body("415005"))
    mock.delete(f"{BASE}/payouts/9a8b-payout", status=200, body="")
    mock.get(f"{BASE}/payouts/9a8b-payout", body=wire(payout_data(status="CANCELED")))

    found = client.find_payout("wd_1")

    assert found is not None
    assert found.id == "9a8b-payout"
    assert client.find_payout("wd_2") is None
    assert client.cancel_payout(found.id).status == "CANCELED"


def test_ids_and_codes_cannot_escape_their_path_segment(client, mock):
    mock.get(f"{BASE}/payouts/by-code/a%2F..%2Fme", status=404, body="")

    assert client.find_payout("a/../me") is None


# Error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "reason_code"),
    [
        (400, error_body("415901", "Invalid request format"), ProviderRejectedError, "415901"),
        (422, "not json at all", ProviderRejectedError, ""),
        (401, error_body("415904", "Unauthorized"), ProviderRejectedError, "415904"),
        (403, "", ProviderRejectedError, ""),
        (404, "<html>Not Found</html>", ProviderNotFoundError, ""),
        (400, error_body("415005", "Payout not found"), ProviderNotFoundError, "415005"),
    ],
)
def test_4xx_answers_are_definitive_rejections(client, mock, status, body, error, reason_code):
    mock.get(f"{BASE}/payouts/p1", status=status, body=body)

    with pytest.raises(error) as caught:
        client.get_payout("p1")

    assert type(caught.value) is error
    assert caught.value.reason_code == reason_code
    assert caught.value.upstream_status == status
    assert caught.value.retryable is False
    assert caught.value.outcome_unknown is False
    assert len(sent(mock)) == 1


def test_a_rejection_carries_airtms_reason_and_message(client, mock):
    mock.post(
        f"{BASE}/payouts",
        status=400,
        body=error_body("415016", "Insufficient balance for payout"),
    )

    with pytest.raises(ProviderRejectedError) as caught:
        client.create_payout(code="wd_1", email="a@example.com", amount=Decimal(5), notes="n")

    assert caught.value.reason_code == "415016"
    assert "Insufficient balance for payout" in caught.value.message
    assert caught.value.details["provider"] == "airtm"
    assert caught.value.details["provider_status"] == 400


def test_recipient_not_found_on_a_create_is_a_rejection_not_a_missing_object(client, mock):
    mock.post(f"{BASE}/payouts", status=400, body=error_body("415059", "Recipient not found"))

    with pytest.raises(ProviderRejectedError) as caught:
        client.create_payout(code="wd_1", email="a@example.com", amount=Decimal(5), notes="n")

    assert not isinstance(caught.value, ProviderNotFoundError)
    assert len(sent(mock)) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_are_logged_as_errors(client, mock, caplog, status):
    mock.get(f"{BASE}/payouts/p1", status=status, body=error_body("415904"))

    with (
        caplog.at_level(logging.ERROR, logger="providers.clients.airtm"),
        pytest.raises(ProviderRejectedError),
    ):
        client.get_payout("p1")

    assert any(
        r.levelno == logging.ERROR and "AIRTM_API_KEY" in r.getMessage() for r in caplog.records
    )
    assert API_SECRET not in caplog.text
    assert BASIC not in caplog.text


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unavailable_with_unknown_outcome(client, mock, status):
    mock.post(f"{BASE}/payouts/p1/commit", status=status, body="<html>Bad gateway</html>")
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="CREATED")))
    mock.post(f"{BASE}/payouts/p1/commit", status=status, body="<html>Bad gateway</html>")

    with pytest.raises(ProviderUnavailableError) as caught:
        client.commit_payout("p1")

    assert caught.value.outcome_unknown is True
    assert caught.value.retryable is True
    assert caught.value.upstream_status == status
    assert "Bad gateway" in caught.value.message


def test_429_is_rate_limited(client, mock):
    mock.get(f"{BASE}/payins/p1", status=429, body=error_body("429", "Too many requests"))

    with pytest.raises(ProviderRateLimitedError) as caught:
        client.get_payin("p1")

    assert caught.value.upstream_status == 429
    assert caught.value.outcome_unknown is False
    assert len(sent(mock)) == 3


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{not json", "cannot use"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"id": "p1", "status": "CREATED"}), '"amount" is missing'),
        (json.dumps({"id": "p1", "status": "CREATED", "amount": "ten"}), "not a number"),
        ('{"id": "p1", "status": "CREATED", "amount": NaN}', "cannot use"),
        ("", "expected a JSON object"),
    ],
)
def test_a_2xx_we_cannot_read_is_unavailable_with_unknown_outcome(client, mock, body, expected):
    mock.get(f"{BASE}/payins/p1", body=body)

    with pytest.raises(ProviderUnavailableError, match=expected) as caught:
        client.get_payin("p1")

    assert caught.value.outcome_unknown is True
    assert caught.value.upstream_status == 200
    assert len(sent(mock)) == 3  # a GET may be retried: it changes nothing


@pytest.mark.parametrize(
    ("failure", "error", "outcome_unknown"),
    [
        (read_timeout, ProviderTimeoutError, True),
        (
            lambda: requests.exceptions.ConnectTimeout("connect timed out"),
            ProviderTimeoutError,
            False,
        ),
        (dropped, ProviderUnavailableError, True),
        (refused, ProviderUnavailableError, False),
    ],
)
def test_transport_failures(client, mock, failure, error, outcome_unknown):
    mock.get(f"{BASE}/payouts/p1", body=failure())

    with pytest.raises(error) as caught:
        client.get_payout("p1")

    assert type(caught.value) is error
    assert caught.value.outcome_unknown is outcome_unknown
    assert caught.value.upstream_status is None
    assert len(sent(mock)) == 3


def test_requests_use_explicit_connect_and_read_timeouts(mock):
    seen: list[Any] = []

    class Session(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(kwargs["timeout"])
            return super().request(*args, **kwargs)

    client = AirtmClient(
        base_url=BASE,
        api_key=API_KEY,
        api_secret=API_SECRET,
        checkout_url="x/{id}",
        connect_timeout=1.5,
        read_timeout=7.0,
        session=Session(),
    )
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data()))

    client.get_payin("p1")

    assert seen == [(1.5, 7.0)]


# GET retries -------------------------------------------------------------------------------


def test_get_retries_transient_failures_with_jittered_exponential_backoff(client, mock, sleeps):
    mock.get(f"{BASE}/payouts/p1", status=503, body="")
    mock.get(f"{BASE}/payouts/p1", body=read_timeout())
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="COMPLETED")))

    assert client.get_payout("p1").status == "COMPLETED"

    assert len(sent(mock)) == 3
    assert len(sleeps) == 2
    assert 0.125 <= sleeps[0] <= 0.25
    assert 0.25 <= sleeps[1] <= 0.5


def test_get_gives_up_after_three_attempts(client, mock, sleeps):
    mock.get(f"{BASE}/payouts/p1", status=502, body="")

    with pytest.raises(ProviderUnavailableError):
        client.get_payout("p1")

    assert len(sent(mock)) == 3
    assert len(sleeps) == 2


def test_429_honours_retry_after(client, mock, sleeps):
    mock.get(f"{BASE}/payins/p1", status=429, headers={"Retry-After": "3"}, body="")
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data()))

    client.get_payin("p1")

    assert sleeps == [3.0]


def test_429_without_retry_after_waits_at_least_airtms_one_second_window(client, mock, sleeps):
    mock.get(f"{BASE}/payins/p1", status=429, body="")
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data()))

    client.get_payin("p1")

    assert len(sleeps) == 1
    assert sleeps[0] >= 1.0


def test_a_long_retry_after_is_handed_to_the_caller_instead_of_slept(client, mock, sleeps):
    mock.get(f"{BASE}/payins/p1", status=429, headers={"Retry-After": "120"}, body="")

    with pytest.raises(ProviderRateLimitedError) as caught:
        client.get_payin("p1")

    assert caught.value.retry_after == 120.0
    assert caught.value.headers == {"Retry-After": "120"}
    assert sleeps == []
    assert len(sent(mock)) == 1


# Exactly-once creates --------------------------------------------------------------------

PAYIN_ARGS: dict[str, Any] = {
    "code": "topup_1",
    "amount": Decimal("10.50"),
    "description": "Top-up",
    "confirmation_uri": "https://shop.test/ok",
    "cancel_uri": "https://shop.test/cancel",
}
PAYOUT_ARGS: dict[str, Any] = {
    "code": "wd_1",
    "email": "Ana@Example.com",
    "amount": Decimal("25"),
    "notes": "Your earnings",
}


@pytest.mark.parametrize("failure", [read_timeout, dropped])
def test_an_uncertain_create_that_happened_is_found_by_code_and_not_sent_again(
    client, mock, failure
):
    mock.post(f"{BASE}/payins", body=failure())
    mock.get(f"{BASE}/payins/by-code/topup_1", body=wire(payin_data()))

    payin = client.create_payin(**PAYIN_ARGS)

    assert payin.id == "3f1c0a7e-payin"
    assert len(sent(mock, "POST")) == 1


def test_a_5xx_create_that_happened_is_found_by_code(client, mock):
    mock.post(f"{BASE}/payouts", status=500, body="")
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data()))

    payout = client.create_payout(**PAYOUT_ARGS)

    assert payout.id == "9a8b-payout"
    assert len(sent(mock, "POST")) == 1


def test_an_unreadable_2xx_create_is_found_by_code(client, mock):
    mock.post(f"{BASE}/payins", status=201, body="{truncated")
    mock.get(f"{BASE}/payins/by-code/topup_1", body=wire(payin_data()))

    assert client.create_payin(**PAYIN_ARGS).id == "3f1c0a7e-payin"
    assert len(sent(mock, "POST")) == 1


def test_an_uncertain_create_that_did_not_happen_is_sent_again(client, mock, sleeps):
    mock.post(f"{BASE}/payins", body=read_timeout())
    mock.get(f"{BASE}/payins/by-code/topup_1", status=404, body=error_body("415031"))
    mock.post(f"{BASE}/payins", status=201, body=wire(payin_data()))

    payin = client.create_payin(**PAYIN_ARGS)

    assert payin.code == "topup_1"
    posts = sent(mock, "POST")
    assert len(posts) == 2
    assert posts[0].body == posts[1].body  # the same request, same code
    assert len(sleeps) == 1


def test_an_uncertain_create_is_sent_at_most_three_times(client, mock):
    mock.post(f"{BASE}/payouts", body=read_timeout())
    mock.get(f"{BASE}/payouts/by-code/wd_1", status=404, body="")

    with pytest.raises(ProviderTimeoutError) as caught:
        client.create_payout(**PAYOUT_ARGS)

    assert caught.value.outcome_unknown is True
    assert len(sent(mock, "POST")) == 3
    assert len(sent(mock, "GET")) == 3


def test_when_the_lookups_fail_too_the_original_error_is_raised_with_unknown_outcome(client, mock):
    mock.post(f"{BASE}/payins", body=read_timeout())
    mock.get(f"{BASE}/payins/by-code/topup_1", status=503, body="")

    with pytest.raises(ProviderTimeoutError) as caught:
        client.create_payin(**PAYIN_ARGS)

    assert caught.value.outcome_unknown is True
    assert isinstance(caught.value.__cause__, ProviderUnavailableError)
    assert len(sent(mock, "POST")) == 1
    assert len(sent(mock, "GET")) == 3  # the lookup itself is retried with backoff


def test_a_dropped_create_whose_lookups_fail_raises_unavailable_with_unknown_outcome(client, mock):
    mock.post(f"{BASE}/payouts", status=502, body="")
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=read_timeout())

    with pytest.raises(ProviderUnavailableError) as caught:
        client.create_payout(**PAYOUT_ARGS)

    assert caught.value.outcome_unknown is True
    assert caught.value.upstream_status == 502
    assert len(sent(mock, "POST")) == 1


@pytest.mark.parametrize("failure", [refused, lambda: requests.exceptions.ConnectTimeout("t")])
def test_a_create_that_never_left_is_sent_again_without_a_lookup(client, mock, failure):
    mock.post(f"{BASE}/payins", body=failure())
    mock.post(f"{BASE}/payins", status=201, body=wire(payin_data()))

    assert client.create_payin(**PAYIN_ARGS).id == "3f1c0a7e-payin"
    assert len(sent(mock, "POST")) == 2
    assert sent(mock, "GET") == []


def test_a_rate_limited_create_is_sent_again_after_waiting(client, mock, sleeps):
    mock.post(f"{BASE}/payouts", status=429, headers={"Retry-After": "2"}, body="")
    mock.post(f"{BASE}/payouts", status=201, body=wire(payout_data()))

    client.create_payout(**PAYOUT_ARGS)

    assert len(sent(mock, "POST")) == 2
    assert sent(mock, "GET") == []
    assert sleeps == [2.0]


def test_a_create_refused_by_airtm_is_not_retried(client, mock):
    mock.post(f"{BASE}/payins", status=400, body=error_body("415053", "US users cannot"))

    with pytest.raises(ProviderRejectedError) as caught:
        client.create_payin(**PAYIN_ARGS)

    assert caught.value.reason_code == "415053"
    assert len(sent(mock)) == 1


def test_a_duplicate_payin_code_returns_the_existing_payin(client, mock):
    mock.post(f"{BASE}/payins", status=400, body=error_body("415029", "Payin code exists"))
    mock.get(f"{BASE}/payins/by-code/topup_1", body=wire(payin_data(status="CONFIRMED")))

    payin = client.create_payin(**PAYIN_ARGS)

    assert payin.status == "CONFIRMED"
    assert len(sent(mock, "POST")) == 1


def test_a_duplicate_payout_code_returns_the_existing_payout(client, mock):
    mock.post(f"{BASE}/payouts", status=409, body=error_body("415056", "Payout code exists"))
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data(status="COMPLETED")))

    assert client.create_payout(**PAYOUT_ARGS).status == "COMPLETED"


def test_a_duplicate_payin_code_with_another_amount_is_a_rejected_collision(client, mock):
    mock.post(f"{BASE}/payins", status=400, body=error_body("415029"))
    mock.get(f"{BASE}/payins/by-code/topup_1", body=wire(payin_data(amount=Decimal("10.49"))))

    with pytest.raises(ProviderRejectedError, match="share a code") as caught:
        client.create_payin(**PAYIN_ARGS)

    assert caught.value.reason_code == "415029"


@pytest.mark.parametrize(
    "existing",
    [
        {"grossAmount": Decimal("25.01")},
        {"airtmUserEmail": "mallory@example.com"},
    ],
)
def test_a_duplicate_payout_code_for_another_request_is_a_rejected_collision(
    client, mock, existing
):
    mock.post(f"{BASE}/payouts", status=400, body=error_body("415056"))
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data(**existing)))

    with pytest.raises(ProviderRejectedError, match="share a code"):
        client.create_payout(**PAYOUT_ARGS)


def test_a_payout_found_after_a_timeout_is_checked_like_a_duplicate(client, mock):
    mock.post(f"{BASE}/payouts", body=read_timeout())
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data(grossAmount=Decimal(2))))

    with pytest.raises(ProviderRejectedError, match="share a code"):
        client.create_payout(**PAYOUT_ARGS)
    assert len(sent(mock, "POST")) == 1


def test_a_duplicate_code_that_cannot_be_found_is_unavailable(client, mock):
    mock.post(f"{BASE}/payins", status=400, body=error_body("415029"))
    mock.get(f"{BASE}/payins/by-code/topup_1", status=404, body="")

    with pytest.raises(ProviderUnavailableError) as caught:
        client.create_payin(**PAYIN_ARGS)

    assert caught.value.outcome_unknown is True


def test_create_with_commit_commits_an_existing_payout_that_was_not(client, mock):
    mock.post(f"{BASE}/payouts", status=400, body=error_body("415056"))
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data(status="CREATED")))
    mock.post(f"{BASE}/payouts/9a8b-payout/commit", status=204)
    mock.get(f"{BASE}/payouts/9a8b-payout", body=wire(payout_data(status="COMMITTED")))

    payout = client.create_payout(**PAYOUT_ARGS, commit=True)

    assert payout.status == "COMMITTED"


# Idempotent commit and cancel --------------------------------------------------------------


def test_commit_of_an_already_processed_payout_returns_it(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", status=400, body=error_body("415027"))
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="COMPLETED")))

    assert client.commit_payout("p1").status == "COMPLETED"
    assert len(sent(mock, "POST")) == 1


def test_an_uncertain_commit_that_happened_is_not_sent_again(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", body=read_timeout())
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="PENDING")))

    assert client.commit_payout("p1").status == "PENDING"
    assert len(sent(mock, "POST")) == 1


def test_an_uncertain_commit_of_a_payout_still_created_is_sent_once_more(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", body=read_timeout())
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="CREATED")))
    mock.post(f"{BASE}/payouts/p1/commit", status=204)
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="COMMITTED")))

    assert client.commit_payout("p1").status == "COMMITTED"
    assert len(sent(mock, "POST")) == 2


def test_a_commit_uncertain_twice_raises_with_unknown_outcome(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", body=read_timeout())
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="CREATED")))

    with pytest.raises(ProviderTimeoutError) as caught:
        client.commit_payout("p1")

    assert caught.value.outcome_unknown is True
    assert len(sent(mock, "POST")) == 2


def test_a_commit_whose_lookup_fails_raises_the_original_error(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", body=read_timeout())
    mock.get(f"{BASE}/payouts/p1", status=503, body="")

    with pytest.raises(ProviderTimeoutError) as caught:
        client.commit_payout("p1")

    assert caught.value.outcome_unknown is True
    assert len(sent(mock, "POST")) == 1


def test_a_second_commit_answered_already_processed_returns_the_payout(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", status=504, body="")
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="CREATED")))
    mock.post(f"{BASE}/payouts/p1/commit", status=400, body=error_body("415027"))
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="COMMITTED")))

    assert client.commit_payout("p1").status == "COMMITTED"


def test_commit_of_an_unknown_payout_is_not_found(client, mock):
    mock.post(f"{BASE}/payouts/p1/commit", status=400, body=error_body("415005"))

    with pytest.raises(ProviderNotFoundError):
        client.commit_payout("p1")


def test_cancel_of_an_already_canceled_payout_returns_it(client, mock):
    mock.delete(f"{BASE}/payouts/p1", status=400, body=error_body("415055", "Not pending"))
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="CANCELED")))

    assert client.cancel_payout("p1").status == "CANCELED"


def test_cancel_refused_for_a_payout_past_canceling_raises(client, mock):
    mock.delete(f"{BASE}/payouts/p1", status=400, body=error_body("415055", "Not pending"))
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data(status="COMPLETED")))

    with pytest.raises(ProviderRejectedError) as caught:
        client.cancel_payout("p1")

    assert caught.value.reason_code == "415055"


def test_an_uncertain_cancel_of_a_still_cancelable_payin_is_sent_once_more(client, mock):
    mock.delete(f"{BASE}/payins/p1", body=read_timeout())
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data(status="CREATED")))
    mock.delete(f"{BASE}/payins/p1", status=204)
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data(status="CANCELED")))

    assert client.cancel_payin("p1").status == "CANCELED"
    assert len(sent(mock, "DELETE")) == 2


def test_an_uncertain_cancel_that_happened_returns_the_payin(client, mock):
    mock.delete(f"{BASE}/payins/p1", status=502, body="")
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data(status="CANCELED")))

    assert client.cancel_payin("p1").status == "CANCELED"
    assert len(sent(mock, "DELETE")) == 1


# Rate limiting -----------------------------------------------------------------------------


def test_calls_wait_for_the_client_side_bucket(mock, sleeps):
    clock = [100.0]
    limiter = RateLimiter(
        name="airtm-test-wait",
        rate=10,
        burst=1,
        credential=API_KEY,
        redis_url="",
        clock=lambda: clock[0],
        sleep=sleeps.append,
    )
    client = AirtmClient(
        base_url=BASE,
        api_key=API_KEY,
        api_secret=API_SECRET,
        checkout_url="x/{id}",
        rate_limiter=limiter,
        sleep=sleeps.append,
    )
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data()))

    client.get_payin("p1")
    client.get_payin("p1")

    assert sleeps == [pytest.approx(0.1)]


def test_a_call_that_would_wait_too_long_for_the_bucket_is_not_sent(mock, sleeps):
    limiter = RateLimiter(
        name="airtm-test-refuse",
        rate=1,
        per=60,
        credential=API_KEY,
        redis_url="",
        clock=lambda: 5.0,
        sleep=sleeps.append,
    )
    client = AirtmClient(
        base_url=BASE,
        api_key=API_KEY,
        api_secret=API_SECRET,
        checkout_url="x/{id}",
        rate_limiter=limiter,
        sleep=sleeps.append,
    )
    mock.post(f"{BASE}/payins", status=201, body=wire(payin_data()))
    client.create_payin(**PAYIN_ARGS)

    with pytest.raises(ProviderRateLimitedError) as caught:
        client.create_payin(**PAYIN_ARGS)

    assert caught.value.outcome_unknown is False
    assert caught.value.retry_after == pytest.approx(60)
    assert len(sent(mock)) == 1
    assert sleeps == []


@override_settings(
    AIRTM_BASE_URL="http://127.0.0.1:9/v2",
    AIRTM_API_KEY="k-settings",
    AIRTM_API_SECRET="s-settings",
    AIRTM_CHECKOUT_URL="https://checkout.test/pay/{id}?lang=es",
    AIRTM_CONNECT_TIMEOUT=2.0,
    AIRTM_READ_TIMEOUT=5.0,
    AIRTM_RATE_LIMIT_PER_SECOND=7.0,
)
def test_from_settings_builds_the_configured_client():
    client = AirtmClient.from_settings()

    assert client.base_url == "http://127.0.0.1:9/v2"
    assert client.checkout_url("p/1") == "https://checkout.test/pay/p%2F1?lang=es"
    assert client._timeout == (2.0, 5.0)
    assert client._rate_limiter is not None
    assert client._rate_limiter.tokens_per_second == 7.0
    assert "k-settings" not in client._rate_limiter.key
    assert "s-settings" not in repr(client)


# Recording ---------------------------------------------------------------------------------


def row_text(row: ProviderCall) -> str:
    return json.dumps(
        {f.name: getattr(row, f.name) for f in ProviderCall._meta.fields}, default=str
    )


def test_every_http_request_is_recorded_retries_included(client, mock):
    mock.get(f"{BASE}/payouts/p1", status=503, body='{"code": "415003", "message": "down"}')
    mock.get(f"{BASE}/payouts/p1", body=read_timeout())
    mock.get(f"{BASE}/payouts/p1", body=wire(payout_data()))

    client.get_payout("p1")

    rows = list(ProviderCall.objects.order_by("id"))
    assert [(r.provider, r.operation, r.method, r.path, r.reference) for r in rows] == [
        ("airtm", "get_payout", "GET", "/payouts/p1", "p1")
    ] * 3
    assert [(r.response_status, r.outcome) for r in rows] == [
        (503, "http_error"),
        (None, "timeout"),
        (200, "ok"),
    ]
    assert "415003" in rows[0].response_body
    assert "503" in rows[0].error
    assert "timed out" in rows[1].error
    assert '"id":"9a8b-payout"' in rows[2].response_body
    assert rows[2].error == ""
    assert all(r.duration_ms >= 0 and r.request_body is None for r in rows)


def test_a_create_and_its_lookups_are_recorded_under_the_code(client, mock):
    mock.post(f"{BASE}/payouts", body=dropped())
    mock.get(f"{BASE}/payouts/by-code/wd_1", body=wire(payout_data()))

    client.create_payout(**PAYOUT_ARGS)

    rows = list(ProviderCall.objects.order_by("id"))
    assert [(r.operation, r.method, r.path, r.reference, r.outcome) for r in rows] == [
        ("create_payout", "POST", "/payouts", "wd_1", "connection_error"),
        ("find_payout", "GET", "/payouts/by-code/wd_1", "wd_1", "ok"),
    ]
    assert rows[0].request_body == {
        "code": "wd_1",
        "airtmUserEmail": "Ana@Example.com",
        "amount": "25.00",
        "notes": "Your earnings",
        "commit": False,
    }


def test_no_secret_reaches_a_record_an_error_or_a_log_even_when_airtm_echoes_it(
    client, mock, caplog
):
    echo = f'{{"code": "415998", "message": "bad auth {API_SECRET} / Basic {BASIC}"}}'
    mock.post(f"{BASE}/payins", status=400, body=echo)
    mock.get(f"{BASE}/payins/p1", status=200, body=f"{{broken {API_SECRET}")

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderRejectedError) as rejected:
            client.create_payin(**PAYIN_ARGS)
        with pytest.raises(ProviderUnavailableError) as unavailable:
            client.get_payin("p1")

    rows = list(ProviderCall.objects.all())
    assert len(rows) == 4
    for text in [*map(row_text, rows), str(rejected.value), str(unavailable.value), caplog.text]:
        assert API_SECRET not in text
        assert BASIC not in text
    assert "[REDACTED]" in rows[0].response_body


def test_the_request_id_of_the_current_request_is_recorded(client, mock):
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data()))

    def in_a_request() -> None:
        set_request_id("req-42")
        client.get_payin("p1")

    copy_context().run(in_a_request)

    assert ProviderCall.objects.get().request_id == "req-42"


def test_record_call_redacts_secret_fields_and_truncates_long_answers():
    # An empty context: no request is being served (earlier tests may leave an id set).
    Context().run(
        lambda: record_call(
            provider="airtm",
            operation="create_payout",
            method="post",
            path="/payouts",
            reference="wd_1",
            request_body={"amount": Decimal("1.10"), "apiSecret": "x", "nested": [{"token": "y"}]},
            response_status=500,
            response_text="e" * 10_000,
            outcome="http_error",
            error="HTTP 500",
            duration_ms=12,
        )
    )

    row = ProviderCall.objects.get()
    assert row.request_body == {
        "amount": "1.10",
        "apiSecret": "[REDACTED]",
        "nested": [{"token": "[REDACTED]"}],
    }
    assert row.method == "POST"
    assert 4096 <= len(row.response_body) < 4200
    assert row.request_id == ""


def test_a_failing_record_never_breaks_the_call(client, mock, monkeypatch, caplog):
    def broken(**kwargs: Any) -> None:
        raise DatabaseError("database is gone")

    monkeypatch.setattr(ProviderCall.objects, "create", broken)
    mock.get(f"{BASE}/payins/p1", body=wire(payin_data()))

    with caplog.at_level(logging.ERROR, logger="providers.recording"):
        payin = client.get_payin("p1")

    assert isinstance(payin, Payin)
    assert "Could not record" in caplog.text
