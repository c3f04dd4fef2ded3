"""An offline Airtm Enterprise API v2, for the embedded default and end-to-end tests.

The orchestrator's real `requests` client talks to it over HTTP exactly as it would talk
to Airtm (../shared/reference/providers.md §2 and §4.1): the same paths under /v2, Basic
auth, the `{code, message, data}` error envelope with Airtm's reason codes, amounts as JSON
numbers, payins paid through a hosted checkout page, payouts that go CREATED -> COMMITTED
-> COMPLETED or PENDING (user action required), and Svix-signed webhooks retried on
Svix's schedule. Money is Decimal throughout.

What the real service has not documented is chosen here and marked [I] below; the
choices are configurable where a client might depend on them (the HTTP status of a
duplicate code, the reason code of an unknown user).

Beyond Airtm, for tests: a test clock (AirtmSimulator.advance), API and webhook fault
injection, a 10 requests/s limiter per API key, and a control API under /__sandbox/
(no auth) that mirrors the Python methods of AirtmSimulator. Everything random (ids,
hashes, probabilistic faults) comes from RNGs seeded by `seed`.

State lives in memory under one lock. Handlers never do network I/O while holding it:
webhooks are queued under the lock and sent by WebhookDispatcher outside it.
"""

import base64
import hmac
import itertools
import logging
import random
import re
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from html import escape
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from providers.sandbox.clock import SimClock, iso
from providers.sandbox.faults import (
    ApiFault,
    ApiFaultKind,
    CannedAnswer,
    FaultInjector,
    RateLimiter,
    serve_with_fault,
)
from providers.sandbox.svix import (
    DeliveryAttempt,
    WebhookDispatcher,
    WebhookFault,
    WebhookMessage,
)
from providers.sandbox.wire import (
    Environ,
    InvalidJSONError,
    StartFn,
    dumps,
    loads,
    seconds_number,
)

__all__ = ["AirtmError", "AirtmSettings", "AirtmSimulator", "SimPayin", "SimPayout", "SimUser"]

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
DAY = 86400
PAYIN_EXPIRY_SECONDS = 15 * DAY  # Airtm: payins expire after 15 days
US_MINIMUM_PAYOUT = Decimal("1")  # Airtm: $1 minimum for US/PR recipients
TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "sandbox" / "airtm_checkout.html"

PAYIN_STATUSES = frozenset(
    {"CREATED", "PROCESSING", "CONFIRMED", "CANCELED", "FAILED", "BRIDGE_FAILED", "BRIDGE_CANCELED"}
)
PAYOUT_STATUSES = frozenset(
    {
        "CREATED",
        "COMMITTED",
        "PENDING",
        "COMPLETED",
        "CANCELED",
        "FAILED",
        "ERROR",
        "PENDING_USER_ACTION",
        "PROCESSING",
        "CANCEL_REQUESTED",
        "PENDING_SIGNATURE",
        "SIGNED",
        "COSMOEM_COMPLETED",
        "BRIDGE_CREATED",
        "BRIDGE_COMPLETED",
        "BRIDGE_FAILED",
        "BRIDGE_MAX_RETRIES_REACHED",
        "BRIDGE_USER_SIGNUP_PENDING",
    }
)
PAYIN_FIELDS = ("code", "amount", "description", "items", "confirmationUri", "cancelUri")
PAYIN_ITEM_FIELDS = ("description", "amount", "quantity")
PAYOUT_FIELDS = (
    "airtmUserEmail",
    "amount",
    "notes",
    "code",
    "commit",
    "enterpriseFee",
    "internalNote",
    "requireIdVerified",
)
PAYOUT_REQUIRED = ("airtmUserEmail", "amount", "notes")
EMAIL = re.compile(r"^(.+)@(.+)$")  # the spec's own pattern


class AirtmError(Exception):
    """An answer in Airtm's error envelope: {"code", "message", "data"}."""

    def __init__(self, status: int, code: str, message: str, /, **data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            body["data"] = self.data
        return _json(body, status=self.status)


class ControlError(Exception):
    """A bad call to the control API (not part of Airtm)."""


# --- state ------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class AirtmSettings:
    """The enterprise account and the simulator's behaviour switches."""

    available: Decimal = Decimal("0")  # enterprise balance after a reset
    payin_fee_percent: Decimal = Decimal("0")  # airtmFee on payins, % of amount
    payout_fee_percent: Decimal = Decimal("0")  # airtmFee on payouts, % of amount
    cancel_pending_payouts_after_days: int = 90  # Airtm allows 7-180
    payout_require_id_verification: bool = False
    duplicate_code_status: int = 409  # [I] Airtm does not say; 409 or 400
    user_not_found_code: str = "415902"  # [I] or "415059"
    payout_completion_delay: float = 0.0  # simulated seconds from COMMITTED to the outcome
    payin_processing_delay: float = 0.0  # >0: confirm goes through PROCESSING for this long
    max_payout_amount: Decimal | None = None  # 415057 above it

    def __post_init__(self) -> None:
        if not 7 <= self.cancel_pending_payouts_after_days <= 180:
            raise ValueError("cancelPendingPayoutsAfterDays must be between 7 and 180")
        if self.duplicate_code_status not in (400, 409, 422):
            raise ValueError("duplicate_code_status must be 400, 409 or 422")
        if self.payout_completion_delay < 0 or self.payin_processing_delay < 0:
            raise ValueError("delays cannot be negative")
        for name in ("payin_fee_percent", "payout_fee_percent"):
            if not 0 <= getattr(self, name) < 100:
                raise ValueError(f"{name} must be between 0 and 100")

    def as_dict(self) -> dict[str, Any]:
        return {
            "payinFeePercent": self.payin_fee_percent,
            "payoutFeePercent": self.payout_fee_percent,
            "cancelPendingPayoutsAfterDays": self.cancel_pending_payouts_after_days,
            "payoutRequireIdVerification": self.payout_require_id_verification,
            "duplicateCodeStatus": self.duplicate_code_status,
            "userNotFoundCode": self.user_not_found_code,
            "payoutCompletionDelaySeconds": seconds_number(self.payout_completion_delay),
            "payinProcessingDelaySeconds": seconds_number(self.payin_processing_delay),
            "maxPayoutAmount": self.max_payout_amount,
        }


@dataclass(kw_only=True)
class SimUser:
    id: str
    email: str
    status: Literal["active", "inactive"] = "active"
    is_verified: bool = True
    country: str = "ARG"  # ISO alpha-3 of the user's ID
    first_name: str = ""
    last_name: str = ""
    balance: Decimal = Decimal("0")  # the user's Airtm wallet
    is_us: bool = False
    secondary_emails: tuple[str, ...] = ()

    def as_api(self, *, looked_up: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "primaryEmail": looked_up.casefold() == self.email.casefold(),
            "firstName": self.first_name,
            "lastName": self.last_name,
            "country": self.country,
            "isVerified": self.is_verified,
        }

    def as_control(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "status": self.status,
            "isVerified": self.is_verified,
            "country": self.country,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "balance": self.balance,
            "isUs": self.is_us,
            "secondaryEmails": list(self.secondary_emails),
        }


@dataclass(kw_only=True)
class OperationEvent:
    id: str
    event_type: str
    operation_type: Literal["PAYIN", "PAYOUT"]
    operation_id: str
    user_id: str
    previous_status: str
    new_status: str
    message: str
    code: str
    available: Decimal
    pending: Decimal
    fbo: Decimal
    at: float

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "eventType": self.event_type,
            "operationType": self.operation_type,
            "operationId": self.operation_id,
            "userId": self.user_id,
            "previousStatus": self.previous_status,
            "newStatus": self.new_status,
            "metadata": {"transitionMessage": self.message, "transitionCode": self.code},
            "availableBalance": self.available,
            "pendingBalance": self.pending,
            "fboBalance": self.fbo,
            "createdAt": iso(self.at),
            "updatedAt": iso(self.at),
        }


@dataclass(kw_only=True)
class SimPayin:
    id: str
    code: str
    hash: str
    status: str
    amount: Decimal
    net_amount: Decimal
    airtm_fee: Decimal
    description: str
    items: list[dict[str, Any]]
    confirmation_uri: str
    cancel_uri: str
    created_at: float
    updated_at: float
    seq: int
    airtm_user_id: str | None = None
    airtm_user_email: str | None = None
    failure_reason: str | None = None
    processing_until: float | None = None
    events: list[OperationEvent] = field(default_factory=list)

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "hash": self.hash,
            "status": self.status,
            "amount": self.amount,
            "netAmount": self.net_amount,
            "airtmFee": self.airtm_fee,
            "description": self.description,
            "items": [dict(item) for item in self.items],
            "airtmUserId": self.airtm_user_id,
            "airtmUserEmail": self.airtm_user_email,
            "failureReason": self.failure_reason,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "confirmationUri": self.confirmation_uri,
            "cancelUri": self.cancel_uri,
        }


@dataclass(kw_only=True)
class SimPayout:
    id: str
    code: str | None
    hash: str
    airtm_user_email: str
    status: str
    gross_amount: Decimal
    amount: Decimal  # debited from the enterprise: gross - enterpriseFee
    net_amount: Decimal  # received by the user: amount - airtmFee
    airtm_fee: Decimal
    enterprise_fee: Decimal
    notes: str
    created_at: float
    updated_at: float
    seq: int
    airtm_user_id: str | None = None
    internal_note: str | None = None
    require_id_verified: bool = False
    reason_code: str | None = None
    reason_description: str | None = None
    resolve_at: float | None = None  # COMMITTED until then (payout_completion_delay)
    events: list[OperationEvent] = field(default_factory=list)

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bulkPayoutId": None,
            "hash": self.hash,
            "code": self.code,
            "airtmUserId": self.airtm_user_id,
            "airtmUserEmail": self.airtm_user_email,
            "requireIdVerified": self.require_id_verified,
            "notes": self.notes,
            "internalNote": self.internal_note,
            "status": self.status,
            "grossAmount": self.gross_amount,
            "amount": self.amount,
            "netAmount": self.net_amount,
            "airtmFee": self.airtm_fee,
            "enterpriseFee": self.enterprise_fee,
            "reasonCode": self.reason_code,
            "reasonDescription": self.reason_description,
            "kycInformation": None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@dataclass(kw_only=True)
class ForcedOutcome:
    """What the next payout(s) to one email end as, whoever the recipient is."""

    status: Literal["COMPLETED", "PENDING", "FAILED"]
    reason_code: str | None = None
    reason_description: str | None = None
    times: int = 1


# --- wire helpers -----------------------------------------------------------------------------


def _json(body: Any, *, status: int = 200) -> Response:
    return Response(dumps(body), status=status, content_type="application/json; charset=utf-8")


def _invalid(message: str, /, **data: Any) -> AirtmError:
    return AirtmError(400, "415901", message, **data)


def _number(body: dict[str, Any], name: str) -> Decimal:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _invalid(f"{name} must be a number", property=name)
    return Decimal(value)


def _string(body: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a string", property=name)
    if max_length is not None and len(value) > max_length:
        raise _invalid(f"{name} must be at most {max_length} characters", property=name)
    return value


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be a boolean", property=name)
    return value


def _url(body: dict[str, Any], name: str) -> str:
    value = _string(body, name)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"{name} must be an absolute http(s) URL", property=name)
    return value


def _check_properties(
    body: Any, *, allowed: Iterable[str], required: Iterable[str], where: str = "body"
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid(f"{where} must be an object")
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise _invalid(f"{where} must NOT have additional properties", property=extra[0])
    missing = [name for name in required if name not in body]
    if missing:
        raise _invalid(f"{where} must have required property '{missing[0]}'", property=missing[0])
    return body


def _two_places(value: Decimal, name: str) -> None:
    if value != value.quantize(CENT):
        raise AirtmError(400, "415906", f"{name} must have at most 2 decimal places", property=name)


def _percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    return (amount * percent / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def _with_code(uri: str, code: str) -> str:
    parts = urlsplit(uri)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "code"]
    query.append(("code", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


@cache
def _checkout_template() -> string.Template:
    return string.Template(TEMPLATE.read_text(encoding="utf-8"))


def _gateway_page(status: int, reason: str) -> CannedAnswer:
    """What a load balancer in front of the API answers: HTML, not Airtm's envelope."""
    title = f"{status} {reason}"
    body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return CannedAnswer(
        status=f"{status} {reason}",
        headers=[("Content-Type", "text/html; charset=utf-8")],
        body=body.encode(),
    )


def _envelope(status: str, code: str, message: str) -> CannedAnswer:
    return CannedAnswer(
        status=status,
        headers=[("Content-Type", "application/json; charset=utf-8")],
        body=dumps({"code": code, "message": message}).encode(),
    )


FAULT_ANSWERS: dict[ApiFaultKind, CannedAnswer] = {
    ApiFaultKind.TIMEOUT: _gateway_page(504, "Gateway Timeout"),
    ApiFaultKind.SERVER_ERROR: _envelope("500 Internal Server Error", "415998", "Unexpected error"),
    ApiFaultKind.BAD_GATEWAY: _gateway_page(502, "Bad Gateway"),
    ApiFaultKind.UNAVAILABLE: _gateway_page(503, "Service Unavailable"),
    ApiFaultKind.RATE_LIMITED: _envelope("429 Too Many Requests", "415903", "Too many requests"),
    ApiFaultKind.UNAUTHORIZED: _envelope("401 Unauthorized", "415904", "Unauthorized request"),
}

_ROUTES = Map(
    [
        # Airtm Enterprise API v2 (Basic auth)
        Rule("/v2/me", endpoint="me", methods=["GET"]),
        Rule("/v2/me/balance", endpoint="balance", methods=["GET"]),
        Rule("/v2/users/<path:email>", endpoint="user", methods=["GET"]),
        Rule("/v2/payins", endpoint="payin_create", methods=["POST"]),
        Rule("/v2/payins", endpoint="payin_list", methods=["GET"]),
        Rule("/v2/payins/by-code/<path:code>", endpoint="payin_by_code", methods=["GET"]),
        Rule("/v2/payins/<id>", endpoint="payin_get", methods=["GET"]),
        Rule("/v2/payins/<id>", endpoint="payin_delete", methods=["DELETE"]),
        Rule("/v2/payouts", endpoint="payout_create", methods=["POST"]),
        Rule("/v2/payouts", endpoint="payout_list", methods=["GET"]),
        Rule("/v2/payouts/by-code/<path:code>", endpoint="payout_by_code", methods=["GET"]),
        Rule("/v2/payouts/<id>", endpoint="payout_get", methods=["GET"]),
        Rule("/v2/payouts/<id>", endpoint="payout_delete", methods=["DELETE"]),
        Rule("/v2/payouts/<id>/commit", endpoint="payout_commit", methods=["POST"]),
        Rule("/v2/payouts/<id>/events", endpoint="payout_events", methods=["GET"]),
        # Hosted checkout (the payer's browser; no auth)
        Rule("/payin/<id>", endpoint="checkout_page", methods=["GET"]),
        Rule("/checkout/<id>", endpoint="checkout_page", methods=["GET"]),
        Rule("/payin/<id>/confirm", endpoint="checkout_confirm", methods=["POST"]),
        Rule("/checkout/<id>/confirm", endpoint="checkout_confirm", methods=["POST"]),
        Rule("/payin/<id>/cancel", endpoint="checkout_cancel", methods=["POST"]),
        Rule("/checkout/<id>/cancel", endpoint="checkout_cancel", methods=["POST"]),
        # Control API (not Airtm; no auth)
        Rule("/__sandbox/reset", endpoint="ctl_reset", methods=["POST"]),
        Rule("/__sandbox/users", endpoint="ctl_users", methods=["GET"]),
        Rule("/__sandbox/users", endpoint="ctl_user_seed", methods=["POST"]),
        Rule(
            "/__sandbox/users/<path:email>/complete-action",
            endpoint="ctl_complete_action",
            methods=["POST"],
        ),
        Rule("/__sandbox/enterprise", endpoint="ctl_enterprise", methods=["GET"]),
        Rule("/__sandbox/enterprise", endpoint="ctl_enterprise_set", methods=["PUT", "POST"]),
        Rule("/__sandbox/faults", endpoint="ctl_faults", methods=["GET"]),
        Rule("/__sandbox/faults", endpoint="ctl_fault_add", methods=["POST"]),
        Rule("/__sandbox/faults", endpoint="ctl_faults_clear", methods=["DELETE"]),
        Rule("/__sandbox/rate-limit", endpoint="ctl_rate_limit", methods=["PUT", "POST"]),
        Rule("/__sandbox/webhooks", endpoint="ctl_webhooks", methods=["GET"]),
        Rule("/__sandbox/webhooks/endpoint", endpoint="ctl_webhook_endpoint", methods=["PUT"]),
        Rule("/__sandbox/webhooks/faults", endpoint="ctl_webhook_faults", methods=["GET"]),
        Rule("/__sandbox/webhooks/faults", endpoint="ctl_webhook_fault_add", methods=["POST"]),
        Rule("/__sandbox/webhooks/faults", endpoint="ctl_webhook_faults_clear", methods=["DELETE"]),
        Rule("/__sandbox/webhooks/flush", endpoint="ctl_webhooks_flush", methods=["POST"]),
        Rule("/__sandbox/webhooks/release-held", endpoint="ctl_release_held", methods=["POST"]),
        Rule("/__sandbox/webhooks/<svix_id>/resend", endpoint="ctl_resend", methods=["POST"]),
        Rule("/__sandbox/clock", endpoint="ctl_clock", methods=["GET"]),
        Rule("/__sandbox/clock/advance", endpoint="ctl_advance", methods=["POST"]),
        Rule("/__sandbox/stats", endpoint="ctl_stats", methods=["GET"]),
        Rule("/__sandbox/payouts/force-outcome", endpoint="ctl_force_outcome", methods=["POST"]),
    ],
    strict_slashes=False,
    merge_slashes=False,
)


@dataclass(frozen=True, kw_only=True)
class _PayoutRequest:
    """A CreatePayoutRequest that passed the spec's checks."""

    code: str | None
    email: str
    gross: Decimal
    fee: Decimal
    notes: str
    internal_note: str | None
    require_id_verified: bool
    commit: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "_PayoutRequest":
        code = _string(body, "code") if "code" in body else None
        if code is not None and not code:
            raise _invalid("code must not be empty", property="code")
        email = _string(body, "airtmUserEmail")
        if not EMAIL.match(email):
            raise _invalid("airtmUserEmail must be an email", property="airtmUserEmail")
        gross = _number(body, "amount")
        fee = _number(body, "enterpriseFee") if "enterpriseFee" in body else Decimal(0)
        if fee < 0:
            raise _invalid("enterpriseFee must be >= 0", property="enterpriseFee")
        request = cls(
            code=code,
            email=email,
            gross=gross,
            fee=fee,
            notes=_string(body, "notes"),
            internal_note=_string(body, "internalNote") if "internalNote" in body else None,
            require_id_verified=_boolean(body, "requireIdVerified")
            if "requireIdVerified" in body
            else False,
            commit=_boolean(body, "commit") if "commit" in body else False,
        )
        if gross < CENT:
            raise AirtmError(400, "415035", "Payout amount too small", property="amount")
        _two_places(gross, "amount")
        _two_places(fee, "enterpriseFee")
        if gross - fee < CENT:
            raise AirtmError(400, "415035", "Payout amount too small after the enterprise fee")
        return request


def _seeded(seed: int | str, stream: str) -> random.Random:
    """A reproducible RNG per purpose, so using one (faults) never shifts another (ids)."""
    return random.Random(f"{seed}:{stream}")  # noqa: S311  # determinism is the point


# --- the simulator ----------------------------------------------------------------------------


class AirtmSimulator:
    """Airtm's Enterprise API v2 in memory, served as a WSGI app (the instance is callable).

    Mount it under "/airtm" (providers.sandbox.server.build_app) so the client's base URL
    is "<server>/airtm/v2" and the checkout is "<server>/airtm/payin/{id}".
    Tests in the same process can drive it directly through its public methods.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        seed: int | str = 0,
        settings: AirtmSettings | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        rate_limit_per_second: int | None = 10,
        webhook_timeout: float = 15.0,
        webhook_timestamps: Literal["wall", "simulated"] = "wall",
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._api_secret = api_secret
        self._initial_settings = settings or AirtmSettings()
        self._lock = threading.RLock()
        self.clock = SimClock(wall=wall)
        self._seed = seed
        self._limiter = RateLimiter(
            lock=self._lock, per_second=rate_limit_per_second, monotonic=monotonic
        )
        self._faults = FaultInjector(lock=self._lock, rng=_seeded(seed, "faults"))
        self.webhooks = WebhookDispatcher(
            lock=self._lock,
            clock=self.clock,
            id_rng=_seeded(seed, "webhook-ids"),
            fault_rng=_seeded(seed, "webhook-faults"),
            timeout=webhook_timeout,
            timestamps=webhook_timestamps,
        )
        self.webhooks.set_endpoint(url=webhook_url, secret=webhook_secret)
        self._wake = threading.Event()
        self.webhooks.on_publish.append(self._wake.set)
        self._stop = threading.Event()
        self._background: threading.Thread | None = None
        self._interrupt = threading.Event()
        self._handlers: dict[str, Callable[..., Response]] = {
            rule.endpoint: getattr(self, f"_{rule.endpoint}")
            for rule in _ROUTES.iter_rules()
            if isinstance(rule.endpoint, str)
        }
        self._reset_state(seed)

    # --- state ----------------------------------------------------------------------------

    def _reset_state(self, seed: int | str) -> None:
        with self._lock:
            self._seed = seed
            self._ids = _seeded(seed, "ids")
            self._faults.clear()
            self._faults.rng = _seeded(seed, "faults")
            self.webhooks.reset(
                id_rng=_seeded(seed, "webhook-ids"),
                fault_rng=_seeded(seed, "webhook-faults"),
            )
            self._limiter.reset()
            self.clock.reset()
            self.settings = replace(self._initial_settings)
            self.enterprise_id = self._uuid()
            self.available = self.settings.available
            self._users: dict[str, SimUser] = {}
            self._payins: dict[str, SimPayin] = {}
            self._payins_by_code: dict[str, SimPayin] = {}
            self._payouts: dict[str, SimPayout] = {}
            self._payouts_by_code: dict[str, SimPayout] = {}
            self._forced: dict[str, list[ForcedOutcome]] = {}
            self._seq = itertools.count(1)
            self._counts: dict[str, Counter[str]] = {
                name: Counter()
                for name in (
                    "payoutsCreatedPerCode",
                    "payoutCreateRequestsPerCode",
                    "payinsCreatedPerCode",
                    "payinCreateRequestsPerCode",
                )
            }
            self._requests = 0
            self._faults_fired = 0
            # Answers stalled by a fault of the previous run are released now.
            self._interrupt.set()
            self._interrupt = threading.Event()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def _hash(self) -> str:
        return self._ids.randbytes(16).hex()

    def _now(self) -> float:
        return self.clock.now()

    def _pending_balance(self) -> Decimal:
        return sum((p.amount for p in self._payouts.values() if p.status == "PENDING"), Decimal(0))

    def _reserved(self) -> Decimal:
        return sum(
            (
                p.amount
                for p in self._payouts.values()
                if p.status in ("CREATED", "COMMITTED", "PENDING")
            ),
            Decimal(0),
        )

    def _find_user(self, email: str) -> SimUser | None:
        key = email.casefold()
        if key in self._users:
            return self._users[key]
        for user in self._users.values():
            if key in (e.casefold() for e in user.secondary_emails):
                return user
        return None

    def _record(
        self,
        obj: SimPayin | SimPayout,
        *,
        new_status: str,
        at: float,
        message: str = "",
        code: str = "",
    ) -> None:
        """Change an object's status and keep the event in its history."""
        previous = obj.events[-1].new_status if obj.events else new_status
        obj.status = new_status
        obj.updated_at = at
        kind: Literal["PAYIN", "PAYOUT"] = "PAYIN" if isinstance(obj, SimPayin) else "PAYOUT"
        obj.events.append(
            OperationEvent(
                id=self._uuid(),
                event_type=f"{kind.lower()}.{new_status.lower()}",
                operation_type=kind,
                operation_id=obj.id,
                user_id=obj.airtm_user_id or self.enterprise_id,
                previous_status=previous,
                new_status=new_status,
                message=message or f"{kind.title()} {new_status.lower()}",
                code=code,
                available=self.available,
                pending=self._pending_balance(),
                fbo=self.available + self._reserved(),
                at=at,
            )
        )

    def _publish(self, event_type: str, obj: SimPayin | SimPayout) -> None:
        self.webhooks.publish(event_type=event_type, data=obj.as_api(), object_id=obj.id)

    # --- the WSGI app ---------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartFn) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if not path.startswith("/__sandbox/"):
            fault = self._faults.pick(method=environ.get("REQUEST_METHOD", "GET"), path=path)
            if fault is not None:
                with self._lock:
                    self._faults_fired += 1
                return serve_with_fault(
                    fault,
                    app=self._serve,
                    environ=environ,
                    start_response=start_response,
                    sleep=self._sleep,
                    error_answer=FAULT_ANSWERS.__getitem__,
                )
        return self._serve(environ, start_response)

    wsgi_app = __call__

    def _sleep(self, seconds: float) -> None:
        """Stall a faulted answer; a reset or close() wakes every stalled answer."""
        with self._lock:
            interrupt = self._interrupt
        interrupt.wait(seconds)

    def _serve(self, environ: Environ, start_response: StartFn) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = 1024 * 1024
        try:
            response = self._dispatch(request)
        except AirtmError as exc:
            response = exc.response()
        except ControlError as exc:
            response = _json({"code": "SANDBOX", "message": str(exc)}, status=400)
        except HTTPException as exc:  # e.g. a body over the size limit
            status = exc.code or 400
            response = AirtmError(status, "415901", exc.name or "Invalid request").response()
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = _ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as exc:
            raise AirtmError(405, "415901", "Method not allowed") from exc
        except NotFound as exc:
            raise AirtmError(404, "415902", "Item not found") from exc
        except HTTPException as exc:  # a redirect for a trailing slash, and the like
            raise AirtmError(exc.code or 400, "415901", "Invalid request format") from exc
        if request.path.startswith("/v2/"):
            self._authenticate(request)
        self.tick()
        return self._handlers[str(endpoint)](request, **args)

    def _authenticate(self, request: Request) -> None:
        auth = request.authorization
        key = auth.username if auth is not None and auth.type == "basic" else ""
        if not self._limiter.allow(key or ""):
            raise AirtmError(429, "415903", "Too many requests: at most 10 per second per API key")
        with self._lock:
            self._requests += 1
        ok = (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest((auth.username or "").encode(), self._api_key.encode())
            and hmac.compare_digest((auth.password or "").encode(), self._api_secret.encode())
        )
        if not ok:
            raise AirtmError(401, "415904", "Unauthorized request")

    def _body(self, request: Request) -> Any:
        try:
            return loads(request.get_data(cache=True))
        except InvalidJSONError as exc:
            raise _invalid("Invalid JSON body") from exc

    # --- clock-driven work ----------------------------------------------------------------

    def _next_due(self) -> float | None:
        """When the next clock-driven change happens (simulated seconds)."""
        with self._lock:
            days = self.settings.cancel_pending_payouts_after_days
            times = [p.resolve_at for p in self._payouts.values() if p.resolve_at is not None]
            times += [
                p.created_at + days * DAY for p in self._payouts.values() if p.status == "PENDING"
            ]
            times += [
                p.created_at + PAYIN_EXPIRY_SECONDS
                for p in self._payins.values()
                if p.status == "CREATED"
            ]
            times += [
                p.processing_until for p in self._payins.values() if p.processing_until is not None
            ]
            return min(times) if times else None

    def tick(self) -> None:
        """Apply whatever the clock has made due: delayed outcomes, expiries, auto-cancels."""
        with self._lock:
            now = self._now()
            for payin in sorted(self._payins.values(), key=lambda p: p.seq):
                if payin.processing_until is not None and payin.processing_until <= now:
                    self._payin_confirm(payin, at=payin.processing_until)
            for payout in sorted(self._payouts.values(), key=lambda p: p.seq):
                if payout.resolve_at is not None and payout.resolve_at <= now:
                    at, payout.resolve_at = payout.resolve_at, None
                    self._payout_resolve(payout, at=at)
            for payin in sorted(self._payins.values(), key=lambda p: p.seq):
                expires = payin.created_at + PAYIN_EXPIRY_SECONDS
                if payin.status == "CREATED" and expires <= now:
                    self._record(payin, new_status="CANCELED", at=expires, message="Payin expired")
                    self._publish("payin.canceled", payin)
            limit = self.settings.cancel_pending_payouts_after_days * DAY
            for payout in sorted(self._payouts.values(), key=lambda p: p.seq):
                if payout.status == "PENDING" and payout.created_at + limit <= now:
                    payout.reason_description = (
                        f"Canceled automatically after "
                        f"{self.settings.cancel_pending_payouts_after_days} days pending"
                    )
                    self._payout_cancel(payout, at=payout.created_at + limit)

    def advance(self, seconds: float, *, deliver: bool = True) -> None:
        """Move the test clock forward, doing on the way everything that falls due.

        Due points are visited in order, so a week-long advance makes every webhook retry
        and every expiry in between, as that week of real time would have. With
        deliver=False, webhooks stay queued (flush_webhooks sends them).
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        target = self._now() + seconds
        for _ in range(100_000):
            candidates = [t for t in (self._next_due(), self.webhooks.next_due()) if t]
            if not deliver:
                candidates = [t for t in (self._next_due(),) if t]
            step = min(candidates) if candidates else None
            if step is None or step > target:
                break
            gap = step - self._now()
            if gap > 0:
                self.clock.advance(gap)
            self.tick()
            if deliver:
                self.webhooks.deliver_due()
        gap = target - self._now()
        if gap > 0:
            self.clock.advance(gap)
        self.tick()
        if deliver:
            self.webhooks.deliver_due()
        self._wake.set()

    def flush_webhooks(self) -> int:
        """Send every webhook attempt due now, synchronously; returns attempts made."""
        self.tick()
        return self.webhooks.deliver_due()

    def start_background(self, *, interval: float = 0.5) -> None:
        """Run clock-driven work and webhook delivery on a thread (what run_sandbox does)."""
        if self._background is not None:
            return
        self._stop.clear()
        self._background = threading.Thread(
            target=self._run_background, args=(interval,), name="airtm-sandbox", daemon=True
        )
        self._background.start()

    def stop_background(self, *, timeout: float | None = None) -> None:
        thread, self._background = self._background, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(self.webhooks.timeout + 1 if timeout is None else timeout)

    def close(self) -> None:
        """Stop the background thread and wake stalled fault answers."""
        self.stop_background()
        with self._lock:
            self._interrupt.set()
        self.webhooks.close()

    def _run_background(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
                self.webhooks.deliver_due()
            except Exception:
                logger.exception("airtm sandbox background work failed")
            wait = interval
            due = self.webhooks.next_due()
            if due is not None:
                wait = max(0.0, min(wait, due - self._now()))
            self._wake.wait(wait)

    # --- payins ---------------------------------------------------------------------------

    def _payin(self, payin_id: str) -> SimPayin:
        payin = self._payins.get(payin_id)
        if payin is None:
            raise AirtmError(404, "415031", "Payin not found", id=payin_id)
        return payin

    def _payin_create(self, request: Request) -> Response:
        body = _check_properties(self._body(request), allowed=PAYIN_FIELDS, required=PAYIN_FIELDS)
        code = _string(body, "code")
        with self._lock:
            self._counts["payinCreateRequestsPerCode"][code] += 1
        if not code:
            raise _invalid("code must not be empty", property="code")
        amount = _number(body, "amount")
        description = _string(body, "description", max_length=250)
        confirmation_uri = _url(body, "confirmationUri")
        cancel_uri = _url(body, "cancelUri")
        raw_items = body["items"]
        if not isinstance(raw_items, list) or not raw_items:
            raise _invalid("items must be a non-empty array", property="items")
        items: list[tuple[str, Decimal, Decimal]] = []
        for index, raw in enumerate(raw_items):
            where = f"items/{index}"
            item = _check_properties(
                raw, allowed=PAYIN_ITEM_FIELDS, required=PAYIN_ITEM_FIELDS, where=where
            )
            item_amount, quantity = _number(item, "amount"), _number(item, "quantity")
            if item_amount < CENT:
                raise _invalid(f"{where}/amount must be >= 0.01", property=f"{where}/amount")
            if quantity < 1:
                raise _invalid(f"{where}/quantity must be >= 1", property=f"{where}/quantity")
            _two_places(item_amount, f"{where}/amount")
            items.append((_string(item, "description"), item_amount, quantity))
        if amount < CENT:
            raise AirtmError(400, "415906", "amount must be at least 0.01", property="amount")
        _two_places(amount, "amount")
        total = sum((a * q for _, a, q in items), Decimal(0))
        if total != amount:
            raise AirtmError(
                400,
                "415906",
                "amount must equal the sum of the items' amount x quantity",
                amount=amount,
                itemsTotal=total,
            )
        with self._lock:
            if code in self._payins_by_code:
                raise AirtmError(
                    self.settings.duplicate_code_status,
                    "415029",
                    "Payin code already exists",
                    code=code,
                )
            now = self._now()
            fee = _percent_of(amount, self.settings.payin_fee_percent)
            payin_id = self._uuid()
            payin = SimPayin(
                id=payin_id,
                code=code,
                hash=self._hash(),
                status="CREATED",
                amount=amount,
                net_amount=amount - fee,
                airtm_fee=fee,
                description=description,
                items=[
                    {
                        "id": self._uuid(),
                        "payinId": payin_id,
                        "description": text,
                        "amount": item_amount,
                        "quantity": quantity,
                    }
                    for text, item_amount, quantity in items
                ],
                confirmation_uri=confirmation_uri,
                cancel_uri=cancel_uri,
                created_at=now,
                updated_at=now,
                seq=next(self._seq),
            )
            self._payins[payin.id] = payin
            self._payins_by_code[code] = payin
            self._counts["payinsCreatedPerCode"][code] += 1
            self._record(payin, new_status="CREATED", at=now, message="Payin created")
            self._publish("payin.created", payin)
            return _json(payin.as_api())

    def _payin_list(self, request: Request) -> Response:
        with self._lock:
            return self._page(request, list(self._payins.values()), PAYIN_STATUSES)

    def _payin_get(self, request: Request, id: str) -> Response:
        with self._lock:
            return _json(self._payin(id).as_api())

    def _payin_by_code(self, request: Request, code: str) -> Response:
        with self._lock:
            payin = self._payins_by_code.get(code)
            if payin is None:
                raise AirtmError(404, "415031", "Payin not found", code=code)
            return _json(payin.as_api())

    def _payin_delete(self, request: Request, id: str) -> Response:
        with self._lock:
            payin = self._payin(id)
            self._payin_cancel(payin)
            return _json(payin.as_api())

    def _payin_cancel(self, payin: SimPayin) -> None:
        if payin.status == "PROCESSING":
            raise AirtmError(422, "415030", "Cannot confirm or cancel payin", status=payin.status)
        if payin.status != "CREATED":
            raise AirtmError(422, "415032", "Payin already completed", status=payin.status)
        self._record(payin, new_status="CANCELED", at=self._now(), message="Payin canceled")
        self._publish("payin.canceled", payin)

    def _payin_pay(self, payin: SimPayin, *, email: str) -> bool:
        """The payer confirmed at the checkout; True when the money moved (or is moving)."""
        now = self._now()
        if payin.status != "CREATED":
            raise AirtmError(422, "415032", "Payin already completed", status=payin.status)
        user = self._find_user(email)
        refusal: tuple[str, str] | None = None
        if user is None:
            refusal = ("415059", "User not found")
        else:
            payin.airtm_user_id, payin.airtm_user_email = user.id, email
            if user.status != "active":
                refusal = ("415009", "User is not active")
            elif user.is_us:
                refusal = ("415053", "US users cannot make payins")
            elif user.balance < payin.amount:
                refusal = ("415034", "User has insufficient balance")
        if user is None or refusal is not None:
            code, reason = refusal or ("415059", "User not found")
            payin.failure_reason = reason
            self._record(payin, new_status="FAILED", at=now, message=reason, code=code)
            self._publish("payin.failed", payin)
            return False
        user.balance -= payin.amount
        if self.settings.payin_processing_delay > 0:
            payin.processing_until = now + self.settings.payin_processing_delay
            self._record(payin, new_status="PROCESSING", at=now, message="Payin processing")
        else:
            self._payin_confirm(payin, at=now)
        return True

    def _payin_confirm(self, payin: SimPayin, *, at: float) -> None:
        payin.processing_until = None
        self.available += payin.net_amount
        self._record(payin, new_status="CONFIRMED", at=at, message="Payin confirmed")
        self._publish("payin.confirmed", payin)

    # --- checkout -------------------------------------------------------------------------

    def _checkout_render(
        self, request: Request, payin: SimPayin | None, *, notice: str, status: int = 200
    ) -> Response:
        open_ = payin is not None and payin.status == "CREATED"
        base = f"{request.script_root}/payin/{payin.id}" if payin else ""
        rows = "".join(
            f"<tr><td>{escape(str(i['description']))}</td><td>{i['quantity']}</td>"
            f"<td>{escape(str(i['amount']))}</td></tr>"
            for i in (payin.items if payin else [])
        )
        page = _checkout_template().safe_substitute(
            description=escape(payin.description if payin else "Unknown payment"),
            amount=escape(f"{payin.amount:.2f}") if payin else "",
            code=escape(payin.code if payin else ""),
            status=escape(payin.status if payin else ""),
            items=rows,
            notice=escape(notice),
            confirm_action=escape(f"{base}/confirm"),
            cancel_action=escape(f"{base}/cancel"),
            form_hidden="" if open_ else "hidden",
        )
        return Response(page, status=status, content_type="text/html; charset=utf-8")

    def _checkout_page(self, request: Request, id: str) -> Response:
        with self._lock:
            payin = self._payins.get(id)
            if payin is None:
                return self._checkout_render(
                    request, None, notice="This payment does not exist.", status=404
                )
            if payin.status != "CREATED":
                return self._checkout_render(
                    request,
                    payin,
                    notice=f"This payment was already completed ({payin.status}).",
                    status=410,
                )
            return self._checkout_render(request, payin, notice="")

    def _checkout_email(self, request: Request) -> str:
        if request.mimetype == "application/json":
            body = self._body(request)
            email = body.get("email") if isinstance(body, dict) else None
        else:
            email = request.form.get("email")
        return email.strip() if isinstance(email, str) else ""

    def _checkout_confirm(self, request: Request, id: str) -> Response:
        email = self._checkout_email(request)
        with self._lock:
            payin = self._payins.get(id)
            if payin is None or payin.status != "CREATED":
                return self._checkout_page(request, id)
            if not EMAIL.match(email):
                return self._checkout_render(
                    request, payin, notice="Enter the email of your Airtm account.", status=400
                )
            paid = self._payin_pay(payin, email=email)
            target = payin.confirmation_uri if paid else payin.cancel_uri
            return Response(status=302, headers={"Location": _with_code(target, payin.code)})

    def _checkout_cancel(self, request: Request, id: str) -> Response:
        with self._lock:
            payin = self._payins.get(id)
            if payin is None or payin.status != "CREATED":
                return self._checkout_page(request, id)
            self._payin_cancel(payin)
            return Response(
                status=302, headers={"Location": _with_code(payin.cancel_uri, payin.code)}
            )

    # --- payouts --------------------------------------------------------------------------

    def _payout(self, payout_id: str) -> SimPayout:
        payout = self._payouts.get(payout_id)
        if payout is None:
            raise AirtmError(404, "415005", "Payout not found", id=payout_id)
        return payout

    def _payout_create(self, request: Request) -> Response:
        body = _check_properties(
            self._body(request), allowed=PAYOUT_FIELDS, required=PAYOUT_REQUIRED
        )
        code = _string(body, "code") if "code" in body else None
        if code is not None:
            with self._lock:
                self._counts["payoutCreateRequestsPerCode"][code] += 1
        req = _PayoutRequest.parse(body)
        email, gross, fee, amount = req.email, req.gross, req.fee, req.gross - req.fee
        with self._lock:
            settings = self.settings
            if settings.max_payout_amount is not None and gross > settings.max_payout_amount:
                raise AirtmError(422, "415057", "Payout exceeds maximum limit", amount=gross)
            user = self._find_user(email)
            if user is not None and user.is_us and gross < US_MINIMUM_PAYOUT:
                raise AirtmError(422, "415058", "Payout below minimum limit", amount=gross)
            if code is not None and code in self._payouts_by_code:
                raise AirtmError(
                    settings.duplicate_code_status,
                    "415056",
                    "Payout code already exists",
                    code=code,
                )
            if self.available < amount:
                raise AirtmError(
                    422, "415016", "Insufficient balance for payout", available=self.available
                )
            now = self._now()
            airtm_fee = _percent_of(amount, settings.payout_fee_percent)
            payout = SimPayout(
                id=self._uuid(),
                code=code,
                hash=self._hash(),
                airtm_user_email=email,
                airtm_user_id=user.id if user else None,
                status="CREATED",
                gross_amount=gross,
                amount=amount,
                net_amount=amount - airtm_fee,
                airtm_fee=airtm_fee,
                enterprise_fee=fee,
                notes=req.notes,
                internal_note=req.internal_note,
                require_id_verified=req.require_id_verified,
                created_at=now,
                updated_at=now,
                seq=next(self._seq),
            )
            self.available -= amount  # reserved until the payout ends
            self._payouts[payout.id] = payout
            if code is not None:
                self._payouts_by_code[code] = payout
                self._counts["payoutsCreatedPerCode"][code] += 1
            self._record(payout, new_status="CREATED", at=now, message="Payout created")
            self._publish("payout.created", payout)
            if req.commit:
                self._payout_commit_now(payout)
            return _json(payout.as_api())

    def _payout_list(self, request: Request) -> Response:
        bulk = request.args.get("bulkPayoutId")
        with self._lock:
            payouts = [] if bulk else list(self._payouts.values())
            return self._page(request, payouts, PAYOUT_STATUSES)

    def _payout_get(self, request: Request, id: str) -> Response:
        with self._lock:
            return _json(self._payout(id).as_api())

    def _payout_by_code(self, request: Request, code: str) -> Response:
        with self._lock:
            payout = self._payouts_by_code.get(code)
            if payout is None:
                raise AirtmError(404, "415005", "Payout not found", code=code)
            return _json(payout.as_api())

    def _payout_events(self, request: Request, id: str) -> Response:
        with self._lock:
            return _json([event.as_api() for event in self._payout(id).events])

    def _payout_commit(self, request: Request, id: str) -> Response:
        with self._lock:
            payout = self._payout(id)
            if payout.status != "CREATED":
                raise AirtmError(422, "415027", "Payout already processed", status=payout.status)
            self._payout_commit_now(payout)
        return Response(status=204)

    def _payout_commit_now(self, payout: SimPayout) -> None:
        now = self._now()
        self._record(payout, new_status="COMMITTED", at=now, message="Payout committed")
        if self.settings.payout_completion_delay > 0:
            payout.resolve_at = now + self.settings.payout_completion_delay
        else:
            self._payout_resolve(payout, at=now)

    def _payout_resolve(self, payout: SimPayout, *, at: float) -> None:
        """COMMITTED -> COMPLETED, PENDING (user action required) or a forced outcome."""
        forced = self._take_forced(payout.airtm_user_email)
        user = self._find_user(payout.airtm_user_email)
        if forced is not None:
            if forced.status == "FAILED":
                self._payout_fail(
                    payout,
                    at=at,
                    code=forced.reason_code or "415073",
                    description=forced.reason_description
                    or "The payment provider could not deliver the funds",
                )
            elif forced.status == "PENDING":
                self._payout_pend(
                    payout,
                    at=at,
                    code=forced.reason_code,
                    description=forced.reason_description or "Waiting for the recipient",
                )
            else:
                user = user or self._user_for(payout.airtm_user_email)
                self._payout_complete(payout, user=user, at=at)
            return
        needs_id = payout.require_id_verified or self.settings.payout_require_id_verification
        if user is None:
            self._payout_pend(
                payout,
                at=at,
                code="415912",
                description="Waiting for recipient to create an Airtm account",
            )
        elif user.status != "active" or not user.is_verified:
            self._payout_pend(
                payout,
                at=at,
                code=None,
                description="Waiting for the recipient to verify their identity"
                if needs_id or not user.is_verified
                else "Waiting for the recipient to reactivate their account",
            )
        else:
            self._payout_complete(payout, user=user, at=at)

    def _take_forced(self, email: str) -> ForcedOutcome | None:
        queue = self._forced.get(email.casefold())
        if not queue:
            return None
        outcome = queue[0]
        outcome.times -= 1
        if outcome.times <= 0:
            queue.pop(0)
        return outcome

    def _user_for(self, email: str) -> SimUser:
        user = self._find_user(email)
        if user is None:
            user = SimUser(id=self._uuid(), email=email)
            self._users[email.casefold()] = user
        return user

    def _payout_complete(self, payout: SimPayout, *, user: SimUser, at: float) -> None:
        payout.airtm_user_id = user.id
        payout.reason_code = payout.reason_description = None
        user.balance += payout.net_amount
        self._record(payout, new_status="COMPLETED", at=at, message="Payout completed")
        self._publish("payout.completed", payout)

    def _payout_pend(
        self, payout: SimPayout, *, at: float, code: str | None, description: str
    ) -> None:
        # Airtm sends no webhook for PENDING: clients learn of it by polling.
        payout.reason_code, payout.reason_description = code, description
        self._record(payout, new_status="PENDING", at=at, message=description, code=code or "")

    def _payout_fail(self, payout: SimPayout, *, at: float, code: str, description: str) -> None:
        payout.reason_code, payout.reason_description = code, description
        self.available += payout.amount
        self._record(payout, new_status="FAILED", at=at, message=description, code=code)
        self._publish("payout.failed", payout)

    def _payout_cancel(self, payout: SimPayout, *, at: float) -> None:
        if payout.status not in ("CREATED", "PENDING"):
            raise AirtmError(
                422, "415055", "Cannot cancel non-pending payout", status=payout.status
            )
        self.available += payout.amount
        self._record(payout, new_status="CANCELED", at=at, message="Payout canceled")
        self._publish("payout.canceled", payout)

    def _payout_delete(self, request: Request, id: str) -> Response:
        with self._lock:
            payout = self._payout(id)
            self._payout_cancel(payout, at=self._now())
            return _json(payout.as_api())

    # --- account --------------------------------------------------------------------------

    def _me(self, request: Request) -> Response:
        with self._lock:
            settings = self.settings
            return _json(
                {
                    "id": self.enterprise_id,
                    "cancelPendingPayoutsAfterDays": settings.cancel_pending_payouts_after_days,
                    "payoutRequireIdVerification": settings.payout_require_id_verification,
                }
            )

    def _balance(self, request: Request) -> Response:
        with self._lock:
            return _json({"available": self.available, "pending": self._pending_balance()})

    def _user(self, request: Request, email: str) -> Response:
        with self._lock:
            user = self._find_user(email)
            if user is None:
                raise AirtmError(
                    404,
                    self.settings.user_not_found_code,
                    "Recipient not found"
                    if self.settings.user_not_found_code == "415059"
                    else "Item not found",
                    email=email,
                )
            return _json(user.as_api(looked_up=email))

    def _page(
        self,
        request: Request,
        objects: list[SimPayin] | list[SimPayout],
        statuses: frozenset[str],
    ) -> Response:
        """Cursor pages in creation order: {items, startCursor, endCursor}."""
        args = request.args
        try:
            per_page = int(args.get("perPage", "100"))
        except ValueError as exc:
            raise _invalid("perPage must be an integer", property="perPage") from exc
        if not 10 <= per_page <= 1000:
            raise _invalid("perPage must be between 10 and 1000", property="perPage")
        status = args.get("status")
        if status is not None and status not in statuses:
            raise _invalid("status must be one of the documented values", property="status")
        rows: list[SimPayin | SimPayout] = sorted(objects, key=lambda o: o.seq)
        if status is not None:
            rows = [o for o in rows if o.status == status]
        by_cursor = {self._cursor(o): o.seq for o in rows}
        if "after" in args:
            rows = [o for o in rows if o.seq > self._cursor_seq(args["after"], by_cursor)]
            rows = rows[:per_page]
        elif "before" in args:
            rows = [o for o in rows if o.seq < self._cursor_seq(args["before"], by_cursor)]
            rows = rows[-per_page:]
        else:
            rows = rows[:per_page]
        body: dict[str, Any] = {"items": [o.as_api() for o in rows]}
        if rows:
            body["startCursor"] = self._cursor(rows[0])
            body["endCursor"] = self._cursor(rows[-1])
        return _json(body)

    @staticmethod
    def _cursor(obj: SimPayin | SimPayout) -> str:
        return base64.urlsafe_b64encode(f"{obj.seq}:{obj.id}".encode()).decode().rstrip("=")

    @staticmethod
    def _cursor_seq(cursor: str, known: dict[str, int]) -> int:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            return int(raw.split(":", 1)[0])
        except (ValueError, UnicodeDecodeError) as exc:
            if cursor in known:
                return known[cursor]
            raise _invalid("Invalid cursor", property="cursor") from exc

    # --- Python API (mirrored by the control API) ------------------------------------------

    def reset(self, *, seed: int | str | None = None) -> None:
        """Forget everything but the credentials and the webhook endpoint."""
        self._reset_state(self._seed if seed is None else seed)

    def seed_user(
        self,
        *,
        email: str,
        status: Literal["active", "inactive"] = "active",
        verified: bool = True,
        country: str = "ARG",
        first_name: str = "Sandbox",
        last_name: str = "User",
        balance: Decimal | int | str = Decimal("0"),
        is_us: bool | None = None,
        secondary_emails: Iterable[str] = (),
    ) -> SimUser:
        """Create or replace an Airtm user (a US flag defaults from country USA/PRI)."""
        if not EMAIL.match(email):
            raise ValueError(f"not an email: {email!r}")
        if status not in ("active", "inactive"):
            raise ValueError("status is 'active' or 'inactive'")
        money = Decimal(balance)
        if money < 0 or not money.is_finite():
            raise ValueError("balance must be a non-negative amount")
        with self._lock:
            existing = self._find_user(email)
            user = SimUser(
                id=existing.id if existing else self._uuid(),
                email=email,
                status=status,
                is_verified=verified,
                country=country,
                first_name=first_name,
                last_name=last_name,
                balance=money,
                is_us=country in ("USA", "PRI") if is_us is None else is_us,
                secondary_emails=tuple(secondary_emails),
            )
            if existing is not None:
                del self._users[existing.email.casefold()]
            self._users[email.casefold()] = user
            return replace(user)

    def user(self, email: str) -> SimUser | None:
        with self._lock:
            user = self._find_user(email)
            return replace(user) if user else None

    def users(self) -> list[SimUser]:
        with self._lock:
            return [replace(u) for u in self._users.values()]

    def complete_user_action(self, *, email: str) -> list[str]:
        """The recipient signs up / verifies: their PENDING payouts complete. Returns ids."""
        with self._lock:
            user = self._user_for(email)
            user.status, user.is_verified = "active", True
            done = []
            for payout in sorted(self._payouts.values(), key=lambda p: p.seq):
                if payout.status == "PENDING" and payout.airtm_user_email.casefold() in (
                    user.email.casefold(),
                    *(e.casefold() for e in user.secondary_emails),
                    email.casefold(),
                ):
                    self._payout_complete(payout, user=user, at=self._now())
                    done.append(payout.id)
            return done

    def set_enterprise(
        self,
        *,
        available: Decimal | int | str | None = None,
        payin_fee_percent: Decimal | int | str | None = None,
        payout_fee_percent: Decimal | int | str | None = None,
        cancel_pending_payouts_after_days: int | None = None,
        payout_require_id_verification: bool | None = None,
        duplicate_code_status: int | None = None,
        user_not_found_code: str | None = None,
        payout_completion_delay: float | None = None,
        payin_processing_delay: float | None = None,
        max_payout_amount: Decimal | int | str | None = None,
    ) -> AirtmSettings:
        """Change the enterprise balance and behaviour switches; None leaves one as it is."""
        changes: dict[str, Any] = {
            "payin_fee_percent": None if payin_fee_percent is None else Decimal(payin_fee_percent),
            "payout_fee_percent": None
            if payout_fee_percent is None
            else Decimal(payout_fee_percent),
            "cancel_pending_payouts_after_days": cancel_pending_payouts_after_days,
            "payout_require_id_verification": payout_require_id_verification,
            "duplicate_code_status": duplicate_code_status,
            "user_not_found_code": user_not_found_code,
            "payout_completion_delay": payout_completion_delay,
            "payin_processing_delay": payin_processing_delay,
            "max_payout_amount": None if max_payout_amount is None else Decimal(max_payout_amount),
        }
        with self._lock:
            settings = replace(self.settings, **{k: v for k, v in changes.items() if v is not None})
            if available is not None:
                money = Decimal(available)
                if money < 0 or not money.is_finite():
                    raise ValueError("available must be a non-negative amount")
                self.available = money
            self.settings = settings
            return replace(settings)

    def add_fault(
        self,
        *,
        kind: ApiFaultKind | str,
        method: str | None = None,
        path: str = "",
        times: int | None = None,
        probability: float | None = None,
        seconds: float = 0.0,
        apply_first: bool = False,
    ) -> ApiFault:
        """Fault the API calls matching method + path regex (see providers.sandbox.faults)."""
        return self._faults.add(
            ApiFault(
                kind=ApiFaultKind(kind),
                method=method,
                path=path,
                times=times,
                probability=probability,
                seconds=seconds,
                apply_first=apply_first,
            )
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[ApiFault]:
        return self._faults.rules()

    def set_rate_limit(self, *, per_second: int | None) -> None:
        """Requests per second per API key (None: no limit)."""
        if per_second is not None and per_second < 1:
            raise ValueError("per_second must be at least 1 (or None)")
        with self._lock:
            self._limiter.set_limit(per_second)

    def set_webhook_endpoint(self, *, url: str | None, secret: str | None) -> None:
        self.webhooks.set_endpoint(url=url, secret=secret)

    def add_webhook_fault(
        self,
        *,
        kind: str,
        event_types: Iterable[str] = (),
        times: int | None = None,
        probability: float | None = None,
        seconds: float = 0.0,
    ) -> WebhookFault:
        return self.webhooks.add_fault(
            WebhookFault(
                kind=kind,  # type: ignore[arg-type]  # validated by WebhookFault
                event_types=tuple(event_types),
                times=times,
                probability=probability,
                seconds=seconds,
            )
        )

    def clear_webhook_faults(self) -> None:
        self.webhooks.clear_faults()

    def webhook_messages(self) -> list[WebhookMessage]:
        return self.webhooks.messages()

    def resend_webhook(self, svix_id: str) -> DeliveryAttempt:
        return self.webhooks.resend(svix_id)

    def force_payout_outcome(
        self,
        *,
        email: str,
        status: Literal["COMPLETED", "PENDING", "FAILED"],
        reason_code: str | None = None,
        reason_description: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` payouts to `email` end as `status` when they are committed."""
        if status not in ("COMPLETED", "PENDING", "FAILED"):
            raise ValueError("status is COMPLETED, PENDING or FAILED")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._forced.setdefault(email.casefold(), []).append(
                ForcedOutcome(
                    status=status,
                    reason_code=reason_code,
                    reason_description=reason_description,
                    times=times,
                )
            )

    def payin(self, *, id: str | None = None, code: str | None = None) -> dict[str, Any] | None:
        """A payin as GET returns it (Decimal amounts), by id or code."""
        with self._lock:
            payin = self._payins.get(id) if id else self._payins_by_code.get(code or "")
            return payin.as_api() if payin else None

    def payout(self, *, id: str | None = None, code: str | None = None) -> dict[str, Any] | None:
        """A payout as GET returns it (Decimal amounts), by id or code."""
        with self._lock:
            payout = self._payouts.get(id) if id else self._payouts_by_code.get(code or "")
            return payout.as_api() if payout else None

    def payouts_created(self, code: str) -> int:
        """How many payouts were created with this code (a correct client makes one)."""
        with self._lock:
            return self._counts["payoutsCreatedPerCode"][code]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            messages = self.webhooks.messages()
            return {
                **{name: dict(counter) for name, counter in self._counts.items()},
                "apiRequests": self._requests,
                "rateLimited": self._limiter.refused,
                "faultsFired": self._faults_fired,
                "payins": len(self._payins),
                "payouts": len(self._payouts),
                "enterprise": {"available": self.available, "pending": self._pending_balance()},
                "webhooks": {
                    "messages": len(messages),
                    "delivered": sum(1 for m in messages if m.status == "delivered"),
                    "attempts": sum(len(m.attempts) for m in messages),
                },
                "clockOffsetSeconds": seconds_number(self.clock.offset),
            }

    # --- control API ----------------------------------------------------------------------

    def _control_body(self, request: Request) -> dict[str, Any]:
        if not request.get_data(cache=True).strip():
            return {}
        try:
            body = loads(request.get_data(cache=True))
        except InvalidJSONError as exc:
            raise ControlError("the body must be JSON") from exc
        if not isinstance(body, dict):
            raise ControlError("the body must be a JSON object")
        return body

    @staticmethod
    def _pick(body: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
        """Map the camelCase keys present in `body` to keyword names; refuse unknown keys."""
        unknown = sorted(set(body) - set(names))
        if unknown:
            raise ControlError(f"unknown field {unknown[0]!r}; expected some of {sorted(names)}")
        return {names[key]: value for key, value in body.items()}

    def _control(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (ValueError, TypeError, KeyError, InvalidOperation) as exc:
            raise ControlError(str(exc) or type(exc).__name__) from exc

    def _ctl_reset(self, request: Request) -> Response:
        body = self._pick(self._control_body(request), {"seed": "seed"})
        self.reset(**body)
        return _json({"ok": True})

    def _ctl_users(self, request: Request) -> Response:
        return _json([u.as_control() for u in self.users()])

    def _ctl_user_seed(self, request: Request) -> Response:
        names = {
            "email": "email",
            "status": "status",
            "verified": "verified",
            "isVerified": "verified",
            "country": "country",
            "firstName": "first_name",
            "lastName": "last_name",
            "balance": "balance",
            "isUs": "is_us",
            "secondaryEmails": "secondary_emails",
        }
        kwargs = self._pick(self._control_body(request), names)
        user = self._control(lambda: self.seed_user(**kwargs))
        return _json(user.as_control(), status=201)

    def _ctl_complete_action(self, request: Request, email: str) -> Response:
        return _json({"completedPayoutIds": self.complete_user_action(email=email)})

    def _ctl_enterprise(self, request: Request) -> Response:
        with self._lock:
            body = self.settings.as_dict()
            body |= {"available": self.available, "pending": self._pending_balance()}
            body["id"] = self.enterprise_id
        return _json(body)

    def _ctl_enterprise_set(self, request: Request) -> Response:
        names = {
            "available": "available",
            "payinFeePercent": "payin_fee_percent",
            "payoutFeePercent": "payout_fee_percent",
            "cancelPendingPayoutsAfterDays": "cancel_pending_payouts_after_days",
            "payoutRequireIdVerification": "payout_require_id_verification",
            "duplicateCodeStatus": "duplicate_code_status",
            "userNotFoundCode": "user_not_found_code",
            "payoutCompletionDelaySeconds": "payout_completion_delay",
            "payinProcessingDelaySeconds": "payin_processing_delay",
            "maxPayoutAmount": "max_payout_amount",
        }
        kwargs = self._pick(self._control_body(request), names)
        self._control(lambda: self.set_enterprise(**kwargs))
        return self._ctl_enterprise(request)

    def _ctl_faults(self, request: Request) -> Response:
        return _json([f.as_dict() for f in self.faults()])

    def _ctl_fault_add(self, request: Request) -> Response:
        names = {
            "kind": "kind",
            "method": "method",
            "path": "path",
            "times": "times",
            "probability": "probability",
            "seconds": "seconds",
            "applyFirst": "apply_first",
        }
        kwargs = self._pick(self._control_body(request), names)
        for key in ("probability", "seconds"):
            if isinstance(kwargs.get(key), Decimal):
                kwargs[key] = float(kwargs[key])  # durations and odds, not money
        fault = self._control(lambda: self.add_fault(**kwargs))
        return _json(fault.as_dict(), status=201)

    def _ctl_faults_clear(self, request: Request) -> Response:
        self.clear_faults()
        return _json({"ok": True})

    def _ctl_rate_limit(self, request: Request) -> Response:
        kwargs = self._pick(self._control_body(request), {"perSecond": "per_second"})
        self._control(lambda: self.set_rate_limit(**kwargs))
        return _json({"perSecond": self._limiter.per_second})

    def _ctl_webhooks(self, request: Request) -> Response:
        return _json(self.webhooks.log())

    def _ctl_webhook_endpoint(self, request: Request) -> Response:
        kwargs = self._pick(self._control_body(request), {"url": "url", "secret": "secret"})
        self._control(
            lambda: self.set_webhook_endpoint(url=kwargs.get("url"), secret=kwargs.get("secret"))
        )
        return _json({"url": self.webhooks.url, "hasSecret": self.webhooks.has_secret})

    def _ctl_webhook_faults(self, request: Request) -> Response:
        return _json([f.as_dict() for f in self.webhooks.faults()])

    def _ctl_webhook_fault_add(self, request: Request) -> Response:
        names = {
            "kind": "kind",
            "eventTypes": "event_types",
            "times": "times",
            "probability": "probability",
            "seconds": "seconds",
        }
        kwargs = self._pick(self._control_body(request), names)
        for key in ("probability", "seconds"):
            if isinstance(kwargs.get(key), Decimal):
                kwargs[key] = float(kwargs[key])
        fault = self._control(lambda: self.add_webhook_fault(**kwargs))
        return _json(fault.as_dict(), status=201)

    def _ctl_webhook_faults_clear(self, request: Request) -> Response:
        self.clear_webhook_faults()
        return _json({"ok": True})

    def _ctl_webhooks_flush(self, request: Request) -> Response:
        return _json({"attempts": self.flush_webhooks()})

    def _ctl_release_held(self, request: Request) -> Response:
        self.webhooks.release_held()
        return _json({"attempts": self.flush_webhooks()})

    def _ctl_resend(self, request: Request, svix_id: str) -> Response:
        try:
            attempt = self.resend_webhook(svix_id)
        except KeyError as exc:
            raise AirtmError(404, "415902", "Item not found", svixId=svix_id) from exc
        return _json(attempt.as_dict())

    def _ctl_clock(self, request: Request) -> Response:
        return _json({"now": iso(self._now()), "offsetSeconds": seconds_number(self.clock.offset)})

    def _ctl_advance(self, request: Request) -> Response:
        kwargs = self._pick(
            self._control_body(request), {"seconds": "seconds", "deliver": "deliver"}
        )
        seconds = kwargs.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | Decimal):
            raise ControlError("seconds must be a number")
        self._control(
            lambda: self.advance(float(seconds), deliver=bool(kwargs.get("deliver", True)))
        )
        return self._ctl_clock(request)

    def _ctl_stats(self, request: Request) -> Response:
        return _json(self.stats())

    def _ctl_force_outcome(self, request: Request) -> Response:
        names = {
            "email": "email",
            "status": "status",
            "reasonCode": "reason_code",
            "reasonDescription": "reason_description",
            "times": "times",
        }
        kwargs = self._pick(self._control_body(request), names)
        self._control(lambda: self.force_payout_outcome(**kwargs))
        return _json({"ok": True})
