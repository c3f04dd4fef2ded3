"""Webhooks delivered the way Svix delivers Airtm's, with faults a receiver must survive.

Faithful part (../shared/reference/providers.md §2.6): a JSON body, the headers
`svix-id` (the same on every retry of a message), `svix-timestamp` (Unix seconds of the
attempt) and `svix-signature` ("v1," + base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"
keyed by the base64-decoded part of the `whsec_` secret); any 2xx within the timeout
(15 s) acknowledges; otherwise the message is tried again after 5 s, 5 min, 30 min, 2 h,
5 h, 10 h and 10 h of simulated time, eight attempts in all.

Attempts of all messages go out one at a time, in order of due time, so a test reads a
receiver's log in a known order. Timestamps are wall-clock time by default: the receiver
checks them against its own clock, which the test clock does not move.

Fault rules (next N matching events, or a probability under the seeded RNG; matching is
by event type pattern such as "payout.*"):
- drop: never sent. delay: first attempt `seconds` later (simulated).
- duplicate: sent twice with the same svix-id. duplicate_new_id: twice, new svix-id.
- out_of_order: held back and sent right after the next event goes out.
- bad_signature, wrong_secret, stale_timestamp (10 minutes old, beyond Svix's 5-minute
  tolerance), webhook_headers (the `webhook-id/-timestamp/-signature` names).
"""

import base64
import fnmatch
import hashlib
import hmac
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import requests

from providers.sandbox.clock import SimClock, iso
from providers.sandbox.wire import dumps, seconds_number

__all__ = [
    "RETRY_DELAYS",
    "DeliveryAttempt",
    "WebhookDispatcher",
    "WebhookFault",
    "WebhookFaultKind",
    "WebhookMessage",
    "sign",
]

# Seconds between attempts after a failed one (the first attempt is immediate).
RETRY_DELAYS = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
STALE_BY_SECONDS = 600
USER_AGENT = "Svix-Webhooks/1.0 (sandbox; +https://www.svix.com/http-sources/)"


class WebhookFaultKind(StrEnum):
    DROP = "drop"
    DELAY = "delay"
    DUPLICATE = "duplicate"
    DUPLICATE_NEW_ID = "duplicate_new_id"
    OUT_OF_ORDER = "out_of_order"
    BAD_SIGNATURE = "bad_signature"
    WRONG_SECRET = "wrong_secret"  # noqa: S105  # a fault name, not a secret
    STALE_TIMESTAMP = "stale_timestamp"
    WEBHOOK_HEADERS = "webhook_headers"


_fault_ids = itertools.count(1)


@dataclass(kw_only=True)
class WebhookFault:
    kind: WebhookFaultKind
    event_types: tuple[str, ...] = ()  # fnmatch patterns; empty: every event
    times: int | None = None  # the next N matching events; None: no limit
    probability: float | None = None
    seconds: float = 0.0  # for delay
    id: int = field(default_factory=lambda: next(_fault_ids))
    fired: int = 0

    def __post_init__(self) -> None:
        self.kind = WebhookFaultKind(self.kind)
        self.event_types = tuple(self.event_types)
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError("probability must be between 0 and 1")
        if self.seconds < 0:
            raise ValueError("seconds cannot be negative")

    def matches(self, event_type: str) -> bool:
        return not self.event_types or any(
            fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "eventTypes": list(self.event_types),
            "times": self.times,
            "probability": None if self.probability is None else seconds_number(self.probability),
            "seconds": seconds_number(self.seconds),
            "fired": self.fired,
        }


@dataclass(kw_only=True)
class DeliveryAttempt:
    number: int
    at: float  # simulated time of the attempt
    headers: dict[str, str]
    status_code: int | None = None
    error: str = ""
    response_body: str = ""
    duration_ms: int = 0
    manual: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "at": iso(self.at),
            "headers": self.headers,
            "statusCode": self.status_code,
            "error": self.error,
            "responseBody": self.response_body,
            "durationMs": self.duration_ms,
            "manual": self.manual,
        }


MessageStatus = Literal["pending", "delivered", "failed", "dropped", "held", "no_endpoint"]


@dataclass(kw_only=True)
class WebhookMessage:
    svix_id: str
    event_type: str
    object_id: str
    body: bytes
    created_at: float
    seq: int
    status: MessageStatus = "pending"
    next_attempt_at: float | None = None
    faults: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    attempts: list[DeliveryAttempt] = field(default_factory=list)

    @property
    def failed_attempts(self) -> int:
        return sum(1 for a in self.attempts if not a.ok and not a.manual)

    def as_dict(self) -> dict[str, Any]:
        return {
            "svixId": self.svix_id,
            "eventType": self.event_type,
            "objectId": self.object_id,
            "status": self.status,
            "faults": list(self.faults),
            "duplicateOf": self.duplicate_of,
            "createdAt": iso(self.created_at),
            "nextAttemptAt": iso(self.next_attempt_at) if self.next_attempt_at else None,
            "body": self.body.decode(),
            "attempts": [a.as_dict() for a in self.attempts],
        }


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Svix endpoint secret: the base64 after "whsec_"."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The svix-signature value for one attempt: "v1,<base64 HMAC-SHA256>"."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookDispatcher:
    """Queue, sign, send and retry webhook messages; keep a log of every attempt.

    State is guarded by the simulator's lock; HTTP happens outside it, one attempt at a
    time (serialized by a second, send-only lock).
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        clock: SimClock,
        id_rng: random.Random,
        fault_rng: random.Random,
        timeout: float = 15.0,
        timestamps: Literal["wall", "simulated"] = "wall",
    ) -> None:
        self._lock = lock
        self._send_lock = threading.Lock()
        self._clock = clock
        self.id_rng = id_rng
        self.fault_rng = fault_rng
        self.timeout = timeout
        self.timestamps = timestamps
        self.url: str | None = None
        self._secret: str | None = None
        self._faults: list[WebhookFault] = []
        self._messages: list[WebhookMessage] = []
        self._seq = itertools.count(1)
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies from the environment: loopback stays local
        self.on_publish: list[Callable[[], None]] = []  # called when a message is queued

    # --- configuration --------------------------------------------------------------------

    def set_endpoint(self, *, url: str | None, secret: str | None) -> None:
        if secret is not None:
            secret_key(secret)  # refuse a malformed secret now
        with self._lock:
            self.url = url
            self._secret = secret

    @property
    def has_secret(self) -> bool:
        return self._secret is not None

    def add_fault(self, fault: WebhookFault) -> WebhookFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[WebhookFault]:
        with self._lock:
            return list(self._faults)

    def reset(self, *, id_rng: random.Random, fault_rng: random.Random) -> None:
        with self._lock:
            self._faults.clear()
            self._messages.clear()
            self._seq = itertools.count(1)
            self.id_rng = id_rng
            self.fault_rng = fault_rng

    # --- publishing -----------------------------------------------------------------------

    def new_message_id(self) -> str:
        alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, as in a ULID
        return "msg_" + "".join(self.id_rng.choice(alphabet) for _ in range(26))

    def publish(self, *, event_type: str, data: dict[str, Any], object_id: str) -> None:
        """Queue one event; `data` is the object exactly as a GET returns it now."""
        body = dumps({"type": event_type, "data": data}).encode()
        with self._lock:
            now = self._clock.now()
            message = WebhookMessage(
                svix_id=self.new_message_id(),
                event_type=event_type,
                object_id=object_id,
                body=body,
                created_at=now,
                seq=next(self._seq),
                next_attempt_at=now,
            )
            extra = self._apply_faults(message)
            if self.url is None and message.status == "pending":
                message.status = "no_endpoint"
                message.next_attempt_at = None
            self._messages.append(message)
            for copy in extra:
                copy.status = message.status
                copy.next_attempt_at = message.next_attempt_at
                self._messages.append(copy)
        for wake in self.on_publish:
            wake()

    def _fired_faults(self, event_type: str) -> list[WebhookFault]:
        fired = []
        for rule in list(self._faults):
            if not rule.matches(event_type):
                continue
            if rule.probability is not None and self.fault_rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self._faults.remove(rule)
            fired.append(rule)
        return fired

    def _apply_faults(self, message: WebhookMessage) -> list[WebhookMessage]:
        extra: list[WebhookMessage] = []
        for rule in self._fired_faults(message.event_type):
            message.faults.append(str(rule.kind))
            match rule.kind:
                case WebhookFaultKind.DROP:
                    message.status = "dropped"
                    message.next_attempt_at = None
                case WebhookFaultKind.DELAY:
                    message.next_attempt_at = message.created_at + rule.seconds
                case WebhookFaultKind.OUT_OF_ORDER:
                    message.status = "held"
                    message.next_attempt_at = None
                case WebhookFaultKind.DUPLICATE | WebhookFaultKind.DUPLICATE_NEW_ID:
                    same_id = rule.kind == WebhookFaultKind.DUPLICATE
                    extra.append(
                        WebhookMessage(
                            svix_id=message.svix_id if same_id else self.new_message_id(),
                            event_type=message.event_type,
                            object_id=message.object_id,
                            body=message.body,
                            created_at=message.created_at,
                            seq=next(self._seq),
                            duplicate_of=message.svix_id,
                        )
                    )
        signing = {
            str(k)
            for k in (
                WebhookFaultKind.BAD_SIGNATURE,
                WebhookFaultKind.WRONG_SECRET,
                WebhookFaultKind.STALE_TIMESTAMP,
                WebhookFaultKind.WEBHOOK_HEADERS,
            )
        }
        for copy in extra:
            copy.faults = [f for f in message.faults if f in signing]
        return extra

    # --- delivery -------------------------------------------------------------------------

    def next_due(self) -> float | None:
        with self._lock:
            due = [
                m.next_attempt_at
                for m in self._messages
                if m.status == "pending" and m.next_attempt_at is not None
            ]
            return min(due) if due else None

    def deliver_due(self) -> int:
        """Send every attempt that is due now; returns how many were made."""
        made = 0
        tried: set[int] = set()
        with self._send_lock:
            while True:
                with self._lock:
                    now = self._clock.now()
                    due = sorted(
                        (
                            m
                            for m in self._messages
                            if m.status == "pending"
                            and m.next_attempt_at is not None
                            and m.next_attempt_at <= now
                            and m.seq not in tried
                        ),
                        key=lambda m: (m.next_attempt_at, m.seq),
                    )
                if not due:
                    return made
                message = due[0]
                tried.add(message.seq)
                self._attempt(message, manual=False)
                made += 1

    def resend(self, svix_id: str) -> DeliveryAttempt:
        """One manual attempt of a message now (the portal's "resend"), same svix-id."""
        with self._lock:
            message = next((m for m in self._messages if m.svix_id == svix_id), None)
        if message is None:
            raise KeyError(svix_id)
        with self._send_lock:
            return self._attempt(message, manual=True)

    def release_held(self) -> None:
        with self._lock:
            self._release_held(self._clock.now())

    def _release_held(self, now: float) -> None:
        for held in self._messages:
            if held.status == "held":
                held.status = "pending"
                held.next_attempt_at = now
                held.seq = next(self._seq)

    def _headers(self, message: WebhookMessage, *, secret: str) -> dict[str, str]:
        clock_now = self._clock.wall() if self.timestamps == "wall" else self._clock.now()
        timestamp = int(clock_now)
        if "stale_timestamp" in message.faults:
            timestamp -= STALE_BY_SECONDS
        if "wrong_secret" in message.faults:
            with self._lock:
                secret = "whsec_" + base64.b64encode(self.fault_rng.randbytes(24)).decode()
        signed_body = message.body
        if "bad_signature" in message.faults:
            signed_body = message.body + b" "  # a valid-looking signature of other bytes
        signature = sign(
            secret=secret, msg_id=message.svix_id, timestamp=timestamp, body=signed_body
        )
        prefix = "webhook-" if "webhook_headers" in message.faults else "svix-"
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            f"{prefix}id": message.svix_id,
            f"{prefix}timestamp": str(timestamp),
            f"{prefix}signature": signature,
        }

    def _attempt(self, message: WebhookMessage, *, manual: bool) -> DeliveryAttempt:
        with self._lock:
            url, secret = self.url, self._secret
            number = len(message.attempts) + 1
            first = not message.attempts
        if url is None or secret is None:
            attempt = DeliveryAttempt(
                number=number, at=self._clock.now(), headers={}, error="no endpoint configured"
            )
        else:
            attempt = DeliveryAttempt(
                number=number,
                at=self._clock.now(),
                headers=self._headers(message, secret=secret),
                manual=manual,
            )
            started = time.monotonic()
            try:
                response = self._session.post(
                    url,
                    data=message.body,
                    headers=attempt.headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
                attempt.status_code = response.status_code
                attempt.response_body = response.text[:1000]
            except requests.RequestException as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"[:500]
            attempt.duration_ms = int((time.monotonic() - started) * 1000)
        with self._lock:
            now = self._clock.now()
            message.attempts.append(attempt)
            if attempt.ok:
                message.status = "delivered"
                message.next_attempt_at = None
            elif not manual:
                failures = message.failed_attempts
                if failures <= len(RETRY_DELAYS):
                    message.next_attempt_at = now + RETRY_DELAYS[failures - 1]
                    message.status = "pending"
                else:
                    message.status = "failed"
                    message.next_attempt_at = None
            if first and not manual:
                self._release_held(now)
        return attempt

    # --- reading --------------------------------------------------------------------------

    def messages(self) -> list[WebhookMessage]:
        with self._lock:
            return list(self._messages)

    def log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.as_dict() for m in sorted(self._messages, key=lambda m: m.created_at)]

    def close(self) -> None:
        self._session.close()
