"""Airtm Enterprise API v2 client (payins, payouts, user lookup), on `requests`.

Facts it follows (../shared/reference/providers.md §2): Basic auth with the API key and
secret; amounts are JSON numbers in USD with at most 2 decimals; errors are
`{"code": "<reason code>", "message", "data"}`; no Idempotency-Key: the caller's unique
`code` deduplicates payins and payouts (415029 / 415056 when reused).

Behaviour:
- Explicit (connect, read) timeouts on every request.
- A client-side token bucket keeps us under Airtm's 10 requests/s per API key, shared by
  every process through Redis when the cache is Redis.
- Creates are exactly-once: after a timeout, a connection error or a 5xx the payin/payout
  is looked up by its code before anything is retried, and a duplicate-code answer returns
  the existing object.
- Every request is recorded as a ProviderCall (redacted) for the admin.
- Errors map to providers.clients.errors: 4xx -> ProviderRejectedError (404 / not-found
  reason codes -> ProviderNotFoundError), 429 -> ProviderRateLimitedError, 5xx and
  connection failures -> ProviderUnavailableError, timeouts -> ProviderTimeoutError.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

PROVIDER = "airtm"

# Payin statuses (final: CONFIRMED, CANCELED, FAILED, BRIDGE_*) and payout statuses.
PAYIN_FINAL = frozenset({"CONFIRMED", "CANCELED", "FAILED", "BRIDGE_FAILED", "BRIDGE_CANCELED"})
PAYOUT_FINAL = frozenset({"COMPLETED", "CANCELED", "FAILED"})

# Reason codes that say "the recipient cannot be paid" (a business refusal about the user).
RECIPIENT_REASON_CODES = frozenset(
    {"415008", "415009", "415010", "415059", "415060", "415061", "415062", "415064", "415065"}
)


@dataclass(frozen=True, kw_only=True)
class AirtmUser:
    id: str
    status: str  # "active" | "inactive"
    email: str
    primary_email: bool
    first_name: str
    last_name: str
    country: str
    is_verified: bool


@dataclass(frozen=True, kw_only=True)
class Payin:
    id: str
    code: str
    status: str  # upper-cased
    amount: Decimal
    net_amount: Decimal | None
    airtm_fee: Decimal | None
    description: str
    airtm_user_id: str | None
    airtm_user_email: str | None
    failure_reason: str | None
    confirmation_uri: str
    cancel_uri: str
    created_at: datetime | None
    updated_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class Payout:
    id: str
    code: str
    status: str  # upper-cased
    gross_amount: Decimal
    amount: Decimal
    net_amount: Decimal | None
    airtm_fee: Decimal | None
    enterprise_fee: Decimal | None
    airtm_user_id: str | None
    airtm_user_email: str
    notes: str
    reason_code: str | None
    reason_description: str | None
    created_at: datetime | None
    updated_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
