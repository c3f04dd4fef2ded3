"""Log lines: JSON with the request id when asked for, and never a secret."""

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from rest_framework.test import APIClient

from orchestrator.context import RequestIdLogFilter, set_request_id
from orchestrator.logs import JsonFormatter, SecretRedactingFilter
from orchestrator.models import Marketplace, MarketplaceUser
from orchestrator.redaction import REDACTED

API_KEY = "ohk_live_key_AbC123_" + "f" * 48
WEBHOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
STELLAR_SEED = "SBK2VIYYSVG76E7VC3QHYARNFLY2EAQXDHRC7BMXBBGIFG74ARPRMNQM"


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """JSON lines written to a handler configured as settings.LOGGING's console handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdLogFilter())
    handler.addFilter(SecretRedactingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_a_line_is_one_json_object_with_the_request_id_and_extra_fields(lines) -> None:
    set_request_id("req_abc")
    try:
        logging.getLogger("orchestrator.test").warning(
            "Top-up %s failed", "topup_1", extra={"topup_id": "topup_1", "attempt": 2}
        )
    finally:
        set_request_id("-")

    (line,) = lines()
    assert line["level"] == "WARNING"
    assert line["logger"] == "orchestrator.test"
    assert line["message"] == "Top-up topup_1 failed"
    assert line["request_id"] == "req_abc"
    assert line["topup_id"] == "topup_1"
    assert line["attempt"] == 2
    assert str(line["time"]).endswith("+00:00")


def test_secrets_never_reach_a_line(lines) -> None:
    log = logging.getLogger("orchestrator.test")

    log.info("key %s secret %s seed %s", API_KEY, WEBHOOK_SECRET, STELLAR_SEED)
    log.info("sent Authorization: Bearer abc.def-123 and Basic dXNlcjpwYXNzd29yZA==")
    log.info("configured", extra={"api_secret": "hunter2", "note": f"uses {API_KEY}"})
    try:
        raise ValueError(f"could not use {WEBHOOK_SECRET}")
    except ValueError:
        log.exception("failed")

    text = json.dumps(lines())
    for secret in (API_KEY, WEBHOOK_SECRET, STELLAR_SEED, "abc.def-123", "hunter2"):
        assert secret not in text
    assert "dXNlcjpwYXNzd29yZA" not in text
    first, second, third, fourth = lines()
    assert first["message"] == f"key {REDACTED} secret {REDACTED} seed {REDACTED}"
    assert "Bearer [REDACTED]" in str(second["message"])
    assert third["api_secret"] == REDACTED
    assert third["note"] == f"uses {REDACTED}"
    assert "ValueError: could not use [REDACTED]" in str(fourth["exception"])


@pytest.mark.django_db
def test_each_request_writes_an_access_line_with_its_request_id_and_route(
    lines, api: APIClient, make_user: Callable[..., MarketplaceUser], marketplace: Marketplace
) -> None:
    user = make_user(marketplace)

    api.get(f"/api/v1/users/{user.public_id}", HTTP_X_REQUEST_ID="req-from-client")

    (access,) = [line for line in lines() if line["logger"] == "orchestrator.access"]
    assert access["request_id"] == "req-from-client"
    assert access["route"] == "/api/v1/users/<str:user_id>"
    assert access["path"] == f"/api/v1/users/{user.public_id}"
    assert access["status"] == 200
    assert access["method"] == "GET"
    assert isinstance(access["duration_ms"], float)
    assert "ohk_" not in json.dumps(access)  # headers are never logged
