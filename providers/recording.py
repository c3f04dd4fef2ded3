"""The record of every HTTP request a provider client makes (ProviderCall rows).

Operators read these rows to answer "what did we send Airtm, and what did it say?" when a
payment is disputed, so a client records each attempt, retries included. Two rules:

- Recording never breaks a call: a database (or any) error is logged and swallowed, because the
  provider call has already happened and its result matters more than its record.
- Nothing secret is stored: request bodies go through orchestrator.redaction.redact, headers
  are never passed in, and clients scrub their credentials out of response text before
  calling (a misbehaving server could echo them back).

Rows are written in their own (savepoint) transaction: provider calls belong outside
business transactions, and if one is made inside anyway, a failed insert must not poison
the caller's transaction.
"""

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import transaction

from orchestrator.context import current_request_id
from orchestrator.metrics import provider_call_observe
from orchestrator.redaction import redact
from providers.models import ProviderCall

logger = logging.getLogger(__name__)

RESPONSE_TEXT_LIMIT = 4096  # characters kept of a response body
ERROR_TEXT_LIMIT = 2000


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON data: Decimals as their exact text, not floats."""
    return json.loads(
        json.dumps(value, default=lambda o: str(o) if isinstance(o, Decimal) else repr(o))
    )


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [truncated, {len(text)} characters in all]"


def record_call(
    *,
    provider: str,
    operation: str,
    method: str,
    path: str,
    reference: str,
    request_body: Any,
    response_status: int | None,
    response_text: str,
    outcome: str,
    error: str,
    duration_ms: int,
) -> None:
    """Store one request/answer pair; `path` is relative to the provider's base URL.

    `outcome` is "ok", "http_error", "invalid_response", "timeout" or "connection_error".
    It is counted in the offerhub_provider_calls metric even when the row cannot be written.
    """
    provider_call_observe(
        provider=provider, operation=operation, outcome=outcome, seconds=duration_ms / 1000
    )
    request_id = current_request_id()
    try:
        with transaction.atomic():
            ProviderCall.objects.create(
                provider=provider[:32],
                operation=operation[:64],
                method=method.upper()[:8],
                path=path[:500],
                reference=reference[:100],
                request_body=None if request_body is None else _jsonable(redact(request_body)),
                response_status=response_status,
                response_body=_truncate(response_text, RESPONSE_TEXT_LIMIT),
                outcome=outcome[:24],
                error=_truncate(error, ERROR_TEXT_LIMIT),
                duration_ms=max(0, duration_ms),
                request_id="" if request_id == "-" else request_id[:100],
            )
    except Exception:
        logger.exception("Could not record the %s %s call %s %s", provider, operation, method, path)


Recorder = Callable[[int | None, str, str, str], None]


def call_recorder(
    *,
    provider: str,
    operation: str,
    method: str,
    path: str,
    reference: str,
    request_body: Any,
    scrub: Callable[[str], str],
) -> Recorder:
    """A `record(status, response_text, outcome, error)` for one request about to be sent:
    it times the request from now and scrubs the texts (a client's credentials) first."""
    started = time.monotonic()

    def record(status: int | None, text: str, outcome: str, error: str) -> None:
        record_call(
            provider=provider,
            operation=operation,
            method=method,
            path=path,
            reference=reference,
            request_body=request_body,
            response_status=status,
            response_text=scrub(text),
            outcome=outcome,
            error=scrub(error),
            duration_ms=round((time.monotonic() - started) * 1000),
        )

    return record
