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

import base64
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from django.conf import settings
from requests.auth import HTTPBasicAuth
from urllib3.exceptions import NewConnectionError

from providers import json_numbers
from providers.clients.errors import (
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.clients.ratelimit import RateLimiter
from providers.recording import call_recorder

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


# Reason codes the client acts on (providers.md §2.7).
PAYIN_CODE_EXISTS = "415029"
PAYOUT_CODE_EXISTS = "415056"
PAYOUT_ALREADY_PROCESSED = "415027"
# On a lookup these mean "no such object" (item, payout, payin, recipient not found).
LOOKUP_NOT_FOUND_CODES = frozenset({"415902", "415005", "415031", "415059"})
# On a call addressed to one object (cancel, commit), "recipient not found" is a refusal.
OBJECT_NOT_FOUND_CODES = frozenset({"415902", "415005", "415031"})

# Statuses from which a cancel may still succeed, so an uncertain DELETE is sent again.
PAYIN_CANCELABLE = frozenset({"CREATED"})
PAYOUT_CANCELABLE = frozenset({"CREATED", "PENDING"})

GET_ATTEMPTS = 3  # a GET is sent at most this many times
MAX_POSTS = 3  # a create (or a commit) is sent at most this many times
RETRY_BASE_DELAY = 0.25  # seconds before the first retry; doubles per attempt, jittered
RETRY_MAX_DELAY = 4.0
MAX_RETRY_AFTER = 10.0  # a longer Retry-After is the caller's to honour, not ours to sleep
RATE_LIMIT_MAX_WAIT = 2.0  # how long a call may queue for the client-side token bucket
CENT = Decimal("0.01")
REDACTED = "[REDACTED]"


class _MalformedError(ValueError):
    """A 2xx body we cannot turn into our objects."""


# ---------------------------------------------------------------------------------------
# Wire format: amounts are JSON numbers, read and written as Decimal text through
# providers.json_numbers, so no amount ever passes through a binary float.


def _cents(amount: Decimal) -> Decimal:
    """`amount` as Airtm takes it: positive, at most 2 decimals (never rounded silently)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError(f"An Airtm amount must be a finite Decimal, not {amount!r}.")
    cents = amount.quantize(CENT)
    if cents != amount:
        raise ValueError(f"Airtm takes at most 2 decimals; {amount} would be rounded.")
    if cents < CENT:
        raise ValueError(f"An Airtm amount must be at least 0.01, not {amount}.")
    return cents


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _MalformedError("expected a JSON object")
    return data


def _required_str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _MalformedError(f'"{key}" is missing or not a string')
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    return _required_str(data, key)


def _required_amount(data: dict[str, Any], key: str) -> Decimal:
    value = _optional_amount(data, key)
    if value is None:
        raise _MalformedError(f'"{key}" is missing')
    return value


def _optional_amount(data: dict[str, Any], key: str) -> Decimal | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise _MalformedError(f'"{key}" is not a number')
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise _MalformedError(f'"{key}" is not a number') from exc
    if not amount.is_finite():
        raise _MalformedError(f'"{key}" is not a finite number')
    return amount


def _optional_time(data: dict[str, Any], key: str) -> datetime | None:
    """An aware datetime; None when absent or unreadable (timestamps are informative only)."""
    value = data.get(key)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        logger.warning("Airtm sent an unreadable %s timestamp: %r", key, value)
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_user(data: Any, *, email: str) -> AirtmUser:
    body = _object(data)
    return AirtmUser(
        id=_required_str(body, "id"),
        status=_required_str(body, "status").lower(),
        email=email,  # Airtm answers about the address we asked for, without repeating it
        primary_email=body.get("primaryEmail") is True,
        first_name=_optional_str(body, "firstName") or "",
        last_name=_optional_str(body, "lastName") or "",
        country=_optional_str(body, "country") or "",
        is_verified=body.get("isVerified") is True,
    )


def _parse_payin(data: Any) -> Payin:
    body = _object(data)
    return Payin(
        id=_required_str(body, "id"),
        code=_optional_str(body, "code") or "",
        status=_required_str(body, "status").upper(),
        amount=_required_amount(body, "amount"),
        net_amount=_optional_amount(body, "netAmount"),
        airtm_fee=_optional_amount(body, "airtmFee"),
        description=_optional_str(body, "description") or "",
        airtm_user_id=_optional_str(body, "airtmUserId"),
        airtm_user_email=_optional_str(body, "airtmUserEmail"),
        failure_reason=_optional_str(body, "failureReason"),
        confirmation_uri=_optional_str(body, "confirmationUri") or "",
        cancel_uri=_optional_str(body, "cancelUri") or "",
        created_at=_optional_time(body, "createdAt"),
        updated_at=_optional_time(body, "updatedAt"),
        raw=body,
    )


def _parse_payout(data: Any) -> Payout:
    body = _object(data)
    amount = _required_amount(body, "amount")
    return Payout(
        id=_required_str(body, "id"),
        code=_optional_str(body, "code") or "",
        status=_required_str(body, "status").upper(),
        # grossAmount is what was requested; without an enterprise fee it equals amount.
        gross_amount=_optional_amount(body, "grossAmount") or amount,
        amount=amount,
        net_amount=_optional_amount(body, "netAmount"),
        airtm_fee=_optional_amount(body, "airtmFee"),
        enterprise_fee=_optional_amount(body, "enterpriseFee"),
        airtm_user_id=_optional_str(body, "airtmUserId"),
        airtm_user_email=_required_str(body, "airtmUserEmail"),
        notes=_optional_str(body, "notes") or "",
        reason_code=_optional_str(body, "reasonCode"),
        reason_description=_optional_str(body, "reasonDescription"),
        created_at=_optional_time(body, "createdAt"),
        updated_at=_optional_time(body, "updatedAt"),
        raw=body,
    )


def _no_body(data: Any) -> None:
    """Commit and cancel answer with an empty 2xx (or a body we do not need)."""


def _error_fields(text: str) -> tuple[str, str]:
    """(reason code, message) of an error body; Airtm's envelope, or any text at all."""
    try:
        body = json_numbers.loads(text)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("message")
        return (
            "" if code is None else str(code)[:32],
            str(message)[:500] if message else text[:200],
        )
    return "", text[:200]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _backoff(attempt: int) -> float:
    """Jittered exponential delay before retry number `attempt` (1-based)."""
    ceiling = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2.0 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection failed before the request could reach Airtm."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError):
            return True
        if isinstance(current, BaseException):
            stack.extend(current.args)
            stack.extend(x for x in (current.__cause__, current.__context__) if x)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return False


PayinOrPayout = TypeVar("PayinOrPayout", Payin, Payout)

# ---------------------------------------------------------------------------------------


class AirtmClient:
    """One Airtm enterprise account, as the orchestrator uses it.

    Network calls: never call these inside transaction.atomic(). Methods raise the
    providers.clients.errors family; `outcome_unknown` on an error means Airtm may have
    applied the call, and the caller should refresh the object later (the code is the key).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        checkout_url: str,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        rate_limiter: "RateLimiter | None" = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = HTTPBasicAuth(api_key, api_secret)
        basic = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        # Scrubbed from anything we record or raise, should Airtm ever echo them back.
        self._secrets = tuple(s for s in (api_secret, basic) if len(s) >= 4)
        self._checkout_url = checkout_url
        self._timeout = (connect_timeout, read_timeout)
        self._rate_limiter = rate_limiter
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<AirtmClient {self.base_url}>"

    @classmethod
    def from_settings(cls) -> "AirtmClient":
        """The client of the configured account, sharing its request budget via Redis."""
        return cls(
            base_url=settings.AIRTM_BASE_URL,
            api_key=settings.AIRTM_API_KEY,
            api_secret=settings.AIRTM_API_SECRET,
            checkout_url=settings.AIRTM_CHECKOUT_URL,
            connect_timeout=settings.AIRTM_CONNECT_TIMEOUT,
            read_timeout=settings.AIRTM_READ_TIMEOUT,
            rate_limiter=RateLimiter(
                name=PROVIDER,
                rate=settings.AIRTM_RATE_LIMIT_PER_SECOND,
                per=1.0,
                credential=settings.AIRTM_API_KEY,
            ),
        )

    def checkout_url(self, payin_id: str) -> str:
        """Where to send the payer: Airtm's hosted checkout for this payin (no API field)."""
        return self._checkout_url.replace("{id}", quote(payin_id, safe=""))

    # Users -------------------------------------------------------------------------------

    def get_user(self, email: str) -> AirtmUser | None:
        """The Airtm account behind `email`, or None when Airtm knows no such user."""
        try:
            return self._get(
                operation="get_user",
                path=f"/users/{quote(email, safe='')}",
                reference=email,
                parse=lambda data: _parse_user(data, email=email),
            )
        except ProviderNotFoundError:
            return None

    # Payins ------------------------------------------------------------------------------

    def create_payin(
        self,
        *,
        code: str,
        amount: Decimal,
        description: str,
        confirmation_uri: str,
        cancel_uri: str,
    ) -> Payin:
        """Create the payin for `code` exactly once (see _create), or return the one that exists.

        Raises:
            ProviderRejectedError: Airtm refused it, or a payin with this code exists for
                a different amount (a code collision is a bug, never accepted).
        """
        cents = _cents(amount)
        body = {
            "code": code,
            "amount": cents,
            "description": description,
            "items": [{"description": description, "amount": cents, "quantity": 1}],
            "confirmationUri": confirmation_uri,
            "cancelUri": cancel_uri,
        }

        def same_request(payin: Payin) -> None:
            if payin.amount != cents:
                raise ProviderRejectedError(
                    f"Airtm already has payin {payin.id} with code {code} for {payin.amount}, "
                    f"not {cents}: two payins share a code.",
                    provider=PROVIDER,
                    reason_code=PAYIN_CODE_EXISTS,
                )

        payin, _ = self._create(
            operation="create_payin",
            path="/payins",
            code=code,
            body=body,
            parse=_parse_payin,
            code_exists=PAYIN_CODE_EXISTS,
            find=self.find_payin,
            same_request=same_request,
        )
        return payin

    def get_payin(self, payin_id: str) -> Payin:
        """Raises ProviderNotFoundError when Airtm has no such payin."""
        return self._get(
            operation="get_payin",
            path=f"/payins/{quote(payin_id, safe='')}",
            reference=payin_id,
            parse=_parse_payin,
        )

    def find_payin(self, code: str) -> Payin | None:
        """The payin we created with `code`, or None when there is none."""
        try:
            return self._get(
                operation="find_payin",
                path=f"/payins/by-code/{quote(code, safe='')}",
                reference=code,
                parse=_parse_payin,
            )
        except ProviderNotFoundError:
            return None

    def cancel_payin(self, payin_id: str) -> Payin:
        """Cancel, then return the payin as it is now (see _cancel)."""
        return self._cancel(
            operation="cancel_payin",
            path=f"/payins/{quote(payin_id, safe='')}",
            reference=payin_id,
            fetch=lambda: self.get_payin(payin_id),
            cancelable=PAYIN_CANCELABLE,
        )

    # Payouts -----------------------------------------------------------------------------

    def create_payout(
        self, *, code: str, email: str, amount: Decimal, notes: str, commit: bool = False
    ) -> Payout:
        """Create (and with `commit`, commit) the payout for `code` exactly once.

        Raises:
            ProviderRejectedError: Airtm refused it, or a payout with this code exists for
                another amount or recipient (a code collision is a bug, never accepted).
        """
        cents = _cents(amount)
        body = {
            "code": code,
            "airtmUserEmail": email,
            "amount": cents,
            "notes": notes,
            "commit": commit,
        }

        def same_request(payout: Payout) -> None:
            if payout.gross_amount != cents or payout.airtm_user_email.lower() != email.lower():
                raise ProviderRejectedError(
                    f"Airtm already has payout {payout.id} with code {code} for "
                    f"{payout.gross_amount} to another request's recipient or amount: two "
                    "payouts share a code.",
                    provider=PROVIDER,
                    reason_code=PAYOUT_CODE_EXISTS,
                )

        payout, adopted = self._create(
            operation="create_payout",
            path="/payouts",
            code=code,
            body=body,
            parse=_parse_payout,
            code_exists=PAYOUT_CODE_EXISTS,
            find=self.find_payout,
            same_request=same_request,
        )
        if adopted and commit and payout.status == "CREATED":
            # The payout that exists was created without commit (an earlier call of ours):
            # finish what this call asked for.
            return self.commit_payout(payout.id)
        return payout

    def commit_payout(self, payout_id: str) -> Payout:
        """Commit a CREATED payout and return it as it is now; safe to call again.

        "Already processed" (415027), or a payout no longer CREATED after an uncertain
        commit, means the commit happened: the payout is returned. A payout still CREATED
        after an uncertain commit is committed once more.
        """
        path = f"/payouts/{quote(payout_id, safe='')}/commit"
        posts = 0
        uncertain_retried = False
        while True:
            posts += 1
            try:
                self._send(
                    operation="commit_payout",
                    method="POST",
                    path=path,
                    reference=payout_id,
                    parse=_no_body,
                    not_found_codes=OBJECT_NOT_FOUND_CODES,
                )
                return self.get_payout(payout_id)
            except ProviderRejectedError as exc:
                if exc.reason_code == PAYOUT_ALREADY_PROCESSED:
                    return self.get_payout(payout_id)
                raise
            except ProviderError as exc:
                if not exc.outcome_unknown:
                    if posts >= MAX_POSTS or not self._pause(exc, attempt=posts):
                        raise
                    continue
                current = self._look_up_after(exc, lambda: self.get_payout(payout_id))
                if current.status != "CREATED":
                    return current
                if uncertain_retried or posts >= MAX_POSTS:
                    raise
                uncertain_retried = True

    def get_payout(self, payout_id: str) -> Payout:
        """Raises ProviderNotFoundError when Airtm has no such payout."""
        return self._get(
            operation="get_payout",
            path=f"/payouts/{quote(payout_id, safe='')}",
            reference=payout_id,
            parse=_parse_payout,
        )

    def find_payout(self, code: str) -> Payout | None:
        """The payout we created with `code`, or None when there is none."""
        try:
            return self._get(
                operation="find_payout",
                path=f"/payouts/by-code/{quote(code, safe='')}",
                reference=code,
                parse=_parse_payout,
            )
        except ProviderNotFoundError:
            return None

    def cancel_payout(self, payout_id: str) -> Payout:
        """Cancel (only CREATED or PENDING payouts can be), then return it as it is now."""
        return self._cancel(
            operation="cancel_payout",
            path=f"/payouts/{quote(payout_id, safe='')}",
            reference=payout_id,
            fetch=lambda: self.get_payout(payout_id),
            cancelable=PAYOUT_CANCELABLE,
        )

    # Exactly-once and retry policies ---------------------------------------------------------

    def _create(
        self,
        *,
        operation: str,
        path: str,
        code: str,
        body: dict[str, Any],
        parse: Callable[[Any], T],
        code_exists: str,
        find: Callable[[str], T | None],
        same_request: Callable[[T], None],
    ) -> tuple[T, bool]:
        """POST a create at most MAX_POSTS times without ever creating two objects.

        Returns the object and whether it already existed (adopted rather than created).
        The POST is repeated only when we know Airtm did not apply it (connection refused,
        429) or when, after an uncertain failure (read timeout, dropped connection, 5xx,
        unreadable 2xx), a lookup by code confirms there is no such object. Airtm's
        "code exists" answer (or a lookup that finds it) returns the existing object,
        after checking it is the one we asked for.
        """
        posts = 0
        while True:
            posts += 1
            try:
                created = self._send(
                    operation=operation,
                    method="POST",
                    path=path,
                    reference=code,
                    body=body,
                    parse=parse,
                )
                return created, False
            except ProviderRejectedError as exc:
                if exc.reason_code != code_exists:
                    raise
                existing = find(code)
                if existing is None:
                    raise ProviderUnavailableError(
                        f"Airtm says the {operation} code {code} exists but does not find it.",
                        provider=PROVIDER,
                        reason_code=code_exists,
                    ) from exc
                same_request(existing)
                return existing, True
            except ProviderError as exc:
                if not exc.outcome_unknown:
                    if posts >= MAX_POSTS or not self._pause(exc, attempt=posts):
                        raise
                    continue
                found = self._look_up_after(exc, lambda: find(code))
                if found is not None:
                    same_request(found)
                    return found, True
                if posts >= MAX_POSTS:
                    raise
                logger.warning("Airtm %s: the uncertain POST created nothing; resending", operation)
                self._sleep(_backoff(posts))

    def _look_up_after(self, original: ProviderError, look_up: Callable[[], T]) -> T:
        """`look_up()` after an uncertain call; if it fails too, the original error stands."""
        try:
            return look_up()
        except ProviderError as lookup_error:
            original.outcome_unknown = True
            raise original from lookup_error

    def _cancel(
        self,
        *,
        operation: str,
        path: str,
        reference: str,
        fetch: Callable[[], PayinOrPayout],
        cancelable: frozenset[str],
    ) -> PayinOrPayout:
        """DELETE, then the object as it is now; idempotent for an already canceled object.

        A refusal (e.g. 415055 "not pending") is re-raised unless the object is already
        CANCELED. After an uncertain DELETE the object is fetched: canceled or past
        canceling, it is returned; still cancelable, the DELETE is sent once more.
        """
        for attempt in (1, 2):
            try:
                self._send(
                    operation=operation,
                    method="DELETE",
                    path=path,
                    reference=reference,
                    parse=_no_body,
                    not_found_codes=OBJECT_NOT_FOUND_CODES,
                )
                return fetch()
            except ProviderRejectedError as exc:
                if isinstance(exc, ProviderNotFoundError) or exc.upstream_status in (401, 403):
                    raise
                current = fetch()
                if current.status == "CANCELED":
                    return current
                raise
            except ProviderError as exc:
                if not exc.outcome_unknown:
                    if attempt == 2 or not self._pause(exc, attempt=attempt):
                        raise
                    continue
                current = self._look_up_after(exc, fetch)
                if attempt == 2 or current.status not in cancelable:
                    return current
        raise AssertionError("unreachable")

    def _get(self, *, operation: str, path: str, reference: str, parse: Callable[[Any], T]) -> T:
        """A GET, retried on timeouts, 5xx, unreadable answers and 429 (bounded)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(
                    operation=operation,
                    method="GET",
                    path=path,
                    reference=reference,
                    parse=parse,
                    not_found_codes=LOOKUP_NOT_FOUND_CODES,
                )
            except ProviderRejectedError:
                raise
            except ProviderError as exc:
                if attempt >= GET_ATTEMPTS or not self._pause(exc, attempt=attempt):
                    raise

    def _pause(self, exc: ProviderError, *, attempt: int) -> bool:
        """Sleep before retrying after a transient `exc`; False when we should not retry."""
        if isinstance(exc, ProviderRateLimitedError):
            if exc.upstream_status is None:
                return False  # our own bucket refused: it has already waited all it may
            if exc.retry_after > MAX_RETRY_AFTER:
                return False
            self._sleep(max(exc.retry_after, _backoff(attempt)))
            return True
        if isinstance(exc, ProviderTimeoutError | ProviderUnavailableError):
            self._sleep(_backoff(attempt))
            return True
        return False

    # One HTTP request ----------------------------------------------------------------------

    def _send(
        self,
        *,
        operation: str,
        method: str,
        path: str,
        reference: str,
        parse: Callable[[Any], T],
        body: dict[str, Any] | None = None,
        not_found_codes: frozenset[str] = frozenset(),
    ) -> T:
        """Send one request, record it, and return its parsed answer or raise its error."""
        if self._rate_limiter is not None:
            self._rate_limiter.acquire(RATE_LIMIT_MAX_WAIT)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json_numbers.dumps(body, normalize=False).encode()
        record = call_recorder(
            provider=PROVIDER,
            operation=operation,
            method=method,
            path=path,
            reference=reference,
            request_body=body,
            scrub=self._scrub,
        )
        try:
            response = self._session.request(
                method,
                f"{self.base_url}{path}",
                data=data,
                headers=headers,
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = self._transport_error(exc, operation=operation, method=method)
            outcome = "timeout" if isinstance(error, ProviderTimeoutError) else "connection_error"
            record(None, "", outcome, str(error))
            logger.warning("Airtm %s %s: %s", operation, method, error)
            raise error from exc

        text = response.content.decode("utf-8", errors="replace")
        status = response.status_code
        if not 200 <= status < 300:
            error = self._http_error(response, text, operation, not_found_codes)
            record(status, text, "http_error", str(error))
            raise error
        try:
            result = parse(json_numbers.loads(text) if text.strip() else None)
        except (ValueError, RecursionError) as exc:
            error = ProviderUnavailableError(
                f"Airtm answered {operation} with HTTP {status} and a body we cannot use: "
                f"{self._scrub(str(exc))[:200]}.",
                provider=PROVIDER,
                http_status=status,
            )
            record(status, text, "invalid_response", str(error))
            logger.warning("Airtm %s %s: %s", operation, method, error)
            raise error from exc
        record(status, text, "ok", "")
        return result

    def _transport_error(
        self, exc: requests.RequestException, *, operation: str, method: str
    ) -> ProviderError:
        never_sent = _never_sent(exc)
        if isinstance(exc, requests.exceptions.Timeout):
            what = "connecting" if never_sent else "waiting for the answer"
            return ProviderTimeoutError(
                f"Airtm {operation} timed out {what}.",
                provider=PROVIDER,
                outcome_unknown=not never_sent,
            )
        if never_sent:
            return ProviderUnavailableError(
                f"Airtm {operation}: could not connect; the request was not sent.",
                provider=PROVIDER,
                outcome_unknown=False,
            )
        return ProviderUnavailableError(
            f"Airtm {operation}: the connection failed ({type(exc).__name__}).",
            provider=PROVIDER,
            outcome_unknown=True,
        )

    def _http_error(
        self,
        response: requests.Response,
        text: str,
        operation: str,
        not_found_codes: frozenset[str],
    ) -> ProviderError:
        status = response.status_code
        reason_code, message = _error_fields(text)
        message = self._scrub(message)
        described = f"Airtm answered {operation} with HTTP {status}"
        if reason_code:
            described += f" ({reason_code})"
        described += f": {message}" if message.strip() else "."
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            logger.warning("%s", described)
            return ProviderRateLimitedError(
                described,
                provider=PROVIDER,
                http_status=status,
                reason_code=reason_code,
                retry_after=1.0 if retry_after is None else retry_after,
            )
        if status >= 500 or status < 400:
            logger.warning("%s", described)
            return ProviderUnavailableError(
                described, provider=PROVIDER, http_status=status, reason_code=reason_code
            )
        if status in (401, 403):
            logger.error("%s. Check AIRTM_API_KEY and AIRTM_API_SECRET.", described)
        elif status == 404 or reason_code in not_found_codes:
            return ProviderNotFoundError(
                described, provider=PROVIDER, http_status=status, reason_code=reason_code
            )
        else:
            logger.info("%s", described)
        return ProviderRejectedError(
            described, provider=PROVIDER, http_status=status, reason_code=reason_code
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
