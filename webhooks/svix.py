"""Svix webhook signatures (what Airtm sends), verified on the raw body.

Signed content: b"{id}.{timestamp}.{raw body}"; key: base64-decoded part after "whsec_";
HMAC-SHA256, base64. The signature header lists space-separated "v1,<sig>" entries (several
while the sender rotates its secret); one match with any of our secrets suffices (we may
rotate too). Headers come as svix-* or, white-labelled, webhook-*.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime

from orchestrator.errors import DomainError


class WebhookSignatureError(DomainError):
    code = "WEBHOOK_SIGNATURE_INVALID"
    http_status = 401


class WebhookHeadersMissingError(WebhookSignatureError):
    http_status = 400


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(f"svix-{name}") or headers.get(f"webhook-{name}") or ""


def message_id(headers: Mapping[str, str]) -> str:
    return _header(headers, "id")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The "v1,<base64>" signature of a message (used by the sandbox and tests)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    tolerance_seconds: int,
) -> str:
    """Check a message; returns its id.

    Raises:
        WebhookHeadersMissingError: id, timestamp or signature header missing or malformed.
        WebhookSignatureError: timestamp outside the tolerance, or no signature matches.
    """
    msg_id, stamp, signatures = (
        _header(headers, "id"),
        _header(headers, "timestamp"),
        _header(headers, "signature"),
    )
    if not (msg_id and stamp and signatures) or not stamp.isdigit() or len(msg_id) > 200:
        raise WebhookHeadersMissingError(
            "Missing or malformed svix-id, svix-timestamp or svix-signature header."
        )
    if abs(now.timestamp() - int(stamp)) > tolerance_seconds:
        raise WebhookSignatureError("Webhook timestamp is outside the tolerance.", id=msg_id)
    if not secrets:
        raise WebhookSignatureError("No webhook secret is configured.", id=msg_id)
    expected = [sign(secret=s, msg_id=msg_id, timestamp=int(stamp), body=body) for s in secrets]
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if any(hmac.compare_digest(entry.encode(), good.encode()) for good in expected):
            return msg_id
    raise WebhookSignatureError("Invalid webhook signature.", id=msg_id)
