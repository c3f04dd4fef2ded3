"""Idempotency-Key handling for mutating requests.

Scope: (API key, method, path, key). Authentication and scope checks have already run,
so a stored answer is only ever replayed to the caller that caused it.

- First request: an IN_PROGRESS row is committed before the view runs (one INSERT ... ON
  CONFLICT statement, which also takes over an expired row), so a concurrent duplicate
  finds it and gets 409 IDEMPOTENCY_KEY_IN_PROGRESS.
- The answer (2xx-4xx, errors too) is stored and replayed verbatim to the same key and body;
  another body is 409 IDEMPOTENCY_KEY_REUSED. Secrets shown once (a new API key) are the
  exception: the view names those fields, and they are stored and replayed redacted.
- A 5xx answer or an unhandled exception deletes the row: nothing was done that a retry
  could double, because every service rolls back on error and provider calls carry their
  own deterministic references.
- A process that dies mid-request leaves the row IN_PROGRESS; it keeps refusing duplicates
  until it expires rather than risk a second execution.
"""

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.utils import timezone

from orchestrator.errors import ConflictError, ValidationFailedError
from orchestrator.models import ApiKey, IdempotencyRecord
from orchestrator.redaction import REDACTED

HEADER = "Idempotency-Key"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyKeyReusedError(ConflictError):
    code = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInProgressError(ConflictError):
    code = "IDEMPOTENCY_KEY_IN_PROGRESS"

    def __init__(self, message: str, /, **details: object) -> None:
        super().__init__(message, **details)
        self.headers = {"Retry-After": "1"}


def fingerprint(body: bytes) -> str:
    """SHA-256 of the body; JSON is canonicalised so key order and spacing do not matter."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


def idempotency_begin(
    *, api_key: ApiKey, method: str, path: str, key: str, body: bytes
) -> IdempotencyRecord | HttpResponse:
    """Claim `key` for this request, or return the stored answer to replay.

    Raises:
        ValidationFailedError: the key is empty, too long or not printable ASCII.
        IdempotencyKeyReusedError: the key was used with another body.
        IdempotencyKeyInProgressError: the first request with this key has not finished.
    """
    if not _VALID_KEY.match(key):
        raise ValidationFailedError(
            f"{HEADER} must be 1-255 printable ASCII characters.", header=HEADER
        )
    digest = fingerprint(body)
    now = timezone.now()
    stored_path = _stored_path(path)
    record = IdempotencyRecord(
        api_key=api_key,
        method=method,
        path=stored_path,
        key=key,
        fingerprint=digest,
        created_at=now,
        expires_at=now + timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS),
    )
    claimed = _claim(record, now)
    if claimed is not None:
        record.pk = claimed
        return record
    scope = {"api_key": api_key, "method": method, "path": stored_path, "key": key}
    existing = IdempotencyRecord.objects.filter(**scope).first()
    if existing is None:  # finished with a 5xx and was deleted between our two statements
        raise IdempotencyKeyInProgressError("A request with this key is being processed.")
    if existing.fingerprint != digest:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was used with a different request body.", idempotency_key=key
        )
    if existing.status == IdempotencyRecord.Status.IN_PROGRESS:
        raise IdempotencyKeyInProgressError(
            "A request with this key is being processed.", idempotency_key=key
        )
    response = HttpResponse(
        existing.response_body,
        status=existing.response_status or 200,
        content_type="application/json",
    )
    response["Idempotency-Replayed"] = "true"
    return response


# The same SQL on PostgreSQL and SQLite (both know ON CONFLICT ... DO UPDATE ... WHERE and
# RETURNING); orchestrator.models.IdempotencyRecord names the table and columns.
_CLAIM = """
INSERT INTO "orchestrator_idempotencyrecord" (
    "api_key_id", "method", "path", "key", "fingerprint", "status", "response_status",
    "response_body", "created_at", "expires_at"
) VALUES (%s, %s, %s, %s, %s, %s, NULL, '', %s, %s)
ON CONFLICT ("api_key_id", "method", "path", "key") DO UPDATE SET
    "fingerprint" = excluded."fingerprint",
    "status" = excluded."status",
    "response_status" = NULL,
    "response_body" = '',
    "created_at" = excluded."created_at",
    "expires_at" = excluded."expires_at"
WHERE "orchestrator_idempotencyrecord"."expires_at" <= %s
RETURNING "id"
"""


def _claim(record: IdempotencyRecord, now: datetime) -> int | None:
    """Insert `record` in one statement, taking over an expired row of the same scope (dead
    even before the cleanup task removes it); None if a live row holds the scope."""
    params: list[Any] = [
        record.api_key_id,
        record.method,
        record.path,
        record.key,
        record.fingerprint,
        IdempotencyRecord.Status.IN_PROGRESS,
        record.created_at,
        record.expires_at,
        now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, params)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _stored_path(path: str) -> str:
    """`path`, or its digest when longer than the column: still one scope per path."""
    if len(path) <= IdempotencyRecord._meta.get_field("path").max_length:  # type: ignore[operator]
        return path
    return "sha256:" + hashlib.sha256(path.encode()).hexdigest()


def idempotency_finish(
    *, record: IdempotencyRecord, response: HttpResponse, secret_fields: Sequence[str] = ()
) -> None:
    """Store the answer (4xx included) for replay; forget the key after a 5xx.

    `secret_fields` (top-level keys of a JSON object body, such as a new API key) are stored
    and so replayed as "[REDACTED]": a secret shown once is never written to the database.
    """
    if response.status_code >= 500:
        idempotency_abandon(record=record)
        return
    body = response.content.decode()
    if secret_fields:
        body = _redact_fields(body, secret_fields)
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=response.status_code,
        response_body=body,
    )


def _redact_fields(body: str, names: Sequence[str]) -> str:
    data = json.loads(body)
    if not isinstance(data, dict):
        return body
    for name in names:
        if name in data:
            data[name] = REDACTED
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def idempotency_abandon(*, record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).delete()


def idempotency_cleanup(*, now: datetime | None = None) -> int:
    """Delete expired records; returns how many."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
