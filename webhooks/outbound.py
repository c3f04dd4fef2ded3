"""Outbound webhooks: marketplaces' endpoints, the delivery outbox and the dispatcher.

Flow: a domain event commits together with one WebhookDelivery per enabled endpoint whose
filter selects it: on PostgreSQL a trigger on the outbox table writes them in the statement
that inserts the event (webhooks migration 0003), elsewhere `deliveries_record`, a
`domain_event` receiver. After commit a Celery task claims the rows (`SELECT ... FOR UPDATE
SKIP LOCKED`, then a lease in `locked_until`), posts the event signed the Standard Webhooks
way and records the attempt. Only a 2xx answer counts. A failure schedules the next attempt
with exponential backoff and jitter until WEBHOOK_RETRY_WINDOW_SECONDS (3 days) have passed
since the first attempt. The sweeper (Celery beat) queues deliveries that are due and whose
lease has lapsed: retries scheduled far ahead, and deliveries whose worker died mid-request.
Delivery is at least once; receivers deduplicate on `webhook-id` (the event id).

No network call happens inside a transaction.
"""

import json
import logging
import random
import secrets as random_secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import certifi
import urllib3
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from orchestrator.audit import audit_record
from orchestrator.catalog import type_matches, validate_patterns
from orchestrator.db import insert_row
from orchestrator.errors import InvalidStateError, ValidationFailedError
from orchestrator.events import publish
from orchestrator.metrics import WEBHOOK_DELIVERY_ATTEMPTS
from orchestrator.models import Event, Marketplace
from webhooks import svix
from webhooks.events import WebhookEndpointDisabled, WebhookPing
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecret
from webhooks.secrets import new_secret, reseal, seal, unseal
from webhooks.targets import Target, TargetRefusedError, parse_target, resolve

logger = logging.getLogger(__name__)

USER_AGENT = "OfferHub-Webhooks/1.0"
STORED_RESPONSE_CHARS = 2000  # what an attempt keeps of the response body
MAX_OVERLAP_SECONDS = 7 * 86400
# Retries due sooner than this are queued with a countdown; later ones wait for the sweeper.
COUNTDOWN_LIMIT_SECONDS = 300
_CHUNK = 64 * 1024


# --- Endpoints --------------------------------------------------------------------------------


def _snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "is_enabled": endpoint.is_enabled,
    }


def _audit(endpoint: WebhookEndpoint, action: str, **kwargs: Any) -> None:
    audit_record(
        action=f"webhook_endpoint.{action}",
        object_type="webhook_endpoint",
        object_id=endpoint.public_id,
        marketplace_id=endpoint.marketplace_id,
        **kwargs,
    )


def _add_secret(endpoint: WebhookEndpoint) -> str:
    raw = new_secret()
    WebhookSecret.objects.create(endpoint=endpoint, sealed=seal(raw), hint=raw[-4:])
    return raw


@transaction.atomic
def endpoint_create(
    *, marketplace: Marketplace, url: str, event_types: Sequence[str], description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret, which is never shown again.

    Raises:
        TargetRefusedError: the URL is not acceptable (https, public host outside test mode).
        ValidationFailedError: an unknown event type or malformed pattern.
    """
    parse_target(url)
    endpoint = WebhookEndpoint.objects.create(
        marketplace=marketplace,
        url=url,
        description=description,
        event_types=validate_patterns(event_types, field="event_types"),
    )
    raw = _add_secret(endpoint)
    _audit(endpoint, "created", after=_snapshot(endpoint))
    return endpoint, raw


def _locked(endpoint: WebhookEndpoint) -> WebhookEndpoint:
    return WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk, deleted_at=None)


@transaction.atomic
def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given. Disabling fails the endpoint's pending deliveries (they can be
    replayed once it is enabled again); enabling clears the failure record."""
    endpoint = _locked(endpoint)
    before = _snapshot(endpoint)
    if url is not None:
        parse_target(url)
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = validate_patterns(event_types, field="event_types")
    if description is not None:
        endpoint.description = description
    if enabled is True and not endpoint.is_enabled:
        endpoint.is_enabled = True
        endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since = "", None, None
    elif enabled is False and endpoint.is_enabled:
        _disable(endpoint, "disabled via the API")
    endpoint.save()
    if _snapshot(endpoint) != before:
        _audit(endpoint, "updated", before=before, after=_snapshot(endpoint))
    return endpoint


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    endpoint.is_enabled = False
    endpoint.disabled_reason = reason[:200]
    endpoint.disabled_at = timezone.now()
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED,
        next_attempt_at=None,
        locked_until=None,
        claim_token="",
        last_error=f"endpoint disabled: {reason}"[:500],
    )


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Stop delivering and hide the endpoint; its deliveries and attempts stay on record."""
    endpoint = _locked(endpoint)
    if endpoint.is_enabled:
        _disable(endpoint, "endpoint deleted")
    endpoint.deleted_at = timezone.now()
    endpoint.save()
    _audit(endpoint, "deleted", before=_snapshot(endpoint))


@transaction.atomic
def endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, overlap_seconds: int | None = None
) -> tuple[WebhookEndpoint, str, datetime]:
    """Make a new signing secret; the current ones stay valid `overlap_seconds` more.

    Returns the endpoint, the new secret (shown once) and when the previous one expires.
    During the overlap every delivery carries one signature per valid secret.
    """
    if overlap_seconds is None:
        overlap_seconds = int(settings.WEBHOOK_ROTATION_OVERLAP_SECONDS)
    if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
        raise ValidationFailedError(
            f"overlap_seconds must be from 0 to {MAX_OVERLAP_SECONDS}.",
            fields={"overlap_seconds": ["Out of range."]},
        )
    endpoint = _locked(endpoint)
    expires_at = timezone.now() + timedelta(seconds=overlap_seconds)
    endpoint.secrets.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=expires_at)).update(
        expires_at=expires_at
    )
    raw = _add_secret(endpoint)
    endpoint.save(update_fields=["updated_at"])  # a new version: cached secrets are stale
    _audit(endpoint, "secret_rotated", after={"previous_expires_at": expires_at.isoformat()})
    return endpoint, raw, expires_at


@transaction.atomic
def secrets_reseal() -> int:
    """Seal every stored signing secret again with the first WEBHOOK_SECRET_KEYS key, after
    a new key was put first; then the old key can be dropped. Returns how many were sealed.
    The secrets themselves (what marketplaces verify with) do not change."""
    rows = list(WebhookSecret.objects.select_for_update().order_by("pk"))
    for row in rows:
        row.sealed = reseal(row.sealed)
    WebhookSecret.objects.bulk_update(rows, ["sealed"], batch_size=500)
    return len(rows)


def endpoint_signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one and any in overlap.

    Opened secrets are kept in this process's memory per endpoint version (`updated_at`,
    which a rotation moves), so the dispatcher does not read and decrypt them per delivery.
    """
    key = (endpoint.pk, endpoint.updated_at)
    opened = _opened.get(key)
    if opened is None:
        rows = endpoint.secrets.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        opened = [(unseal(row.sealed), row.expires_at) for row in rows]
        if len(_opened) > 1000:
            _opened.clear()
        _opened[key] = opened
    return [secret for secret, expires in opened if expires is None or expires > now]


_opened: dict[tuple[int, datetime], list[tuple[str, datetime | None]]] = {}


@transaction.atomic
def endpoint_ping(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Send a `webhook.ping` event to this endpoint only; returns its delivery."""
    endpoint = _locked(endpoint)
    if not endpoint.is_enabled:
        raise InvalidStateError(
            "The endpoint is disabled; enable it first.", endpoint_id=endpoint.public_id
        )
    record = publish(WebhookPing(marketplace_id=None, aggregate_id=endpoint.public_id))
    (delivery,) = _deliveries_create(record, [endpoint])
    return delivery


# --- The outbox -------------------------------------------------------------------------------


def deliveries_written_by_database() -> bool:
    """True where the outbox trigger writes the deliveries (PostgreSQL)."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


# Marketplaces with an enabled endpoint, as (read at, ids): after each commit the web process
# queues a dispatch only for their events. A change in this process (an endpoint saved) clears
# it at once; another process's change is seen within WEBHOOK_ENDPOINT_INDEX_SECONDS, and
# until then the sweeper sends those deliveries (the rows exist either way: only latency).
_endpoint_index: tuple[float, frozenset[int]] = (float("-inf"), frozenset())


def marketplace_has_endpoints(marketplace_id: int) -> bool:
    global _endpoint_index
    read_at, ids = _endpoint_index
    if time.monotonic() - read_at > settings.WEBHOOK_ENDPOINT_INDEX_SECONDS:
        read_at = time.monotonic()
        ids = frozenset(
            WebhookEndpoint.objects.filter(is_enabled=True, deleted_at=None)
            .values_list("marketplace_id", flat=True)
            .distinct()
        )
        _endpoint_index = (read_at, ids)
    return marketplace_id in ids


def endpoint_index_clear() -> None:
    global _endpoint_index
    _endpoint_index = (float("-inf"), frozenset())


def deliveries_record(record: Event) -> list[WebhookDelivery]:
    """One delivery per enabled endpoint of the event's marketplace that selects its type.

    Runs inside the event's transaction (a `domain_event` receiver) where the database does
    not write them itself; the same rule as the trigger of webhooks migration 0003.
    """
    if record.marketplace_id is None:
        return []
    candidates = WebhookEndpoint.objects.filter(
        marketplace_id=record.marketplace_id, is_enabled=True, deleted_at=None
    ).only("pk", "event_types")
    endpoints = [e for e in candidates if type_matches(e.event_types, record.type)]
    if not endpoints:
        return []
    return _deliveries_create(record, endpoints)


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=float(settings.WEBHOOK_LEASE_SECONDS))


def _deliveries_create(
    record: Event, endpoints: Sequence[WebhookEndpoint]
) -> list[WebhookDelivery]:
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            event=record,
            event_type=record.type,
            next_attempt_at=now,
            locked_until=_lease(now),  # owned by the task queued below
            claim_token=random_secrets.token_hex(16),
        )
        for endpoint in endpoints
    )
    jobs = [(d.pk, d.claim_token) for d in deliveries]
    transaction.on_commit(partial(_enqueue, jobs))
    return deliveries


def _enqueue(jobs: Sequence[tuple[int, str]], countdown: float = 0.0) -> None:
    from webhooks.tasks import delivery_attempt  # webhooks.tasks imports this module

    for delivery_id, token in jobs:
        kwargs = {"delivery_id": delivery_id, "token": token}
        if countdown > 0:
            delivery_attempt.apply_async(kwargs=kwargs, countdown=countdown)
        else:
            delivery_attempt.apply_async(kwargs=kwargs)


def deliveries_sweep(*, limit: int = 500) -> int:
    """Queue the deliveries that are due and that no task owns (their lease lapsed or none
    was taken). Returns how many were queued."""
    jobs = _claim_due(WebhookDelivery.objects.all(), limit=limit)
    _enqueue(jobs)
    return len(jobs)


def deliveries_dispatch(*, event_id: int) -> int:
    """Send the deliveries of one just-committed event that no task owns yet (written by the
    database trigger), each one attempt, here. Returns how many were attempted."""
    jobs = _claim_due(WebhookDelivery.objects.filter(event_id=event_id), limit=100)
    for delivery_id, token in jobs:
        delivery_attempt(delivery_id=delivery_id, token=token)
    return len(jobs)


def _claim_due(deliveries: QuerySet[WebhookDelivery], *, limit: int) -> list[tuple[int, str]]:
    """Lease the due, unowned rows among `deliveries`; returns (id, claim token) pairs."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            deliveries.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .order_by("next_attempt_at")
            .only("pk", "locked_until", "claim_token")[:limit]
        )
        for delivery in due:
            delivery.locked_until = _lease(now)
            delivery.claim_token = random_secrets.token_hex(16)
        WebhookDelivery.objects.bulk_update(due, ["locked_until", "claim_token"])
    return [(d.pk, d.claim_token) for d in due]


# --- Sending ----------------------------------------------------------------------------------


def _relaxed_commit() -> None:
    """Inside a dispatcher transaction: do not wait for the WAL flush at commit.

    Claims and attempt records only steer an at-least-once delivery: if PostgreSQL crashed
    and lost the last few, a delivery would be sent again, never lost. It saves a disk flush
    per transaction on the hot path. (Deliveries themselves are written with their event,
    in the change's transaction, with the usual durable commit.)
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO off")


@dataclass(frozen=True, slots=True)
class Claim:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    event: Event
    token: str
    number: int  # this attempt's number


@dataclass(frozen=True, slots=True)
class Outcome:
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    body: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        """Only a 2xx answer counts (a body cut at the cap or read too slowly still does)."""
        return self.status_code is not None and 200 <= self.status_code < 300


def delivery_attempt(*, delivery_id: int, token: str) -> str:
    """Claim, send and record one attempt. Returns what happened ("succeeded", "retrying",
    "failed" or "skipped": the row was not this task's to send)."""
    claim = _claim(delivery_id, token)
    if claim is None:
        return "skipped"
    body = event_body(claim.event)
    outcome = send(claim.endpoint, claim.event.public_id, body)
    result = _record(claim, outcome)
    WEBHOOK_DELIVERY_ATTEMPTS.labels(result).inc()
    return result


def _claim(delivery_id: int, token: str) -> Claim | None:
    now = timezone.now()
    with transaction.atomic():
        _relaxed_commit()
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "event")
            .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
            .first()
        )
        if delivery is None or delivery.next_attempt_at is None:
            return None  # finished, or another worker holds it right now
        lapsed = delivery.locked_until is None or delivery.locked_until < now
        if not (lapsed or delivery.claim_token == token):
            return None  # another task owns it (a replay, the sweeper)
        if delivery.next_attempt_at > now + timedelta(seconds=1):
            return None  # early (a stale task); the owner of the schedule will come
        mine = random_secrets.token_hex(16)
        delivery.claim_token = mine
        delivery.locked_until = _lease(now)
        delivery.first_attempt_at = delivery.first_attempt_at or now
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            claim_token=mine,
            locked_until=delivery.locked_until,
            first_attempt_at=delivery.first_attempt_at,
        )
        return Claim(delivery, delivery.endpoint, delivery.event, mine, delivery.attempt_count + 1)


def event_body(event: Event) -> bytes:
    """The JSON posted for an event: the same object the event API and SSE show."""
    return json.dumps(event.as_dict(), cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def signed_headers(
    *, secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    signatures = " ".join(
        svix.sign(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def send(endpoint: WebhookEndpoint, msg_id: str, body: bytes) -> Outcome:
    """POST one signed message. Never raises for what the receiver or the network does."""
    started, clock = timezone.now(), time.monotonic()

    def outcome(**kwargs: Any) -> Outcome:
        return Outcome(started, int((time.monotonic() - clock) * 1000), **kwargs)

    try:
        target = parse_target(endpoint.url)
        address = resolve(target)
        secrets = endpoint_signing_secrets(endpoint, started)
    except TargetRefusedError as exc:
        return outcome(error=f"refused: {exc.message}")
    headers = {
        **signed_headers(
            secrets=secrets, msg_id=msg_id, timestamp=int(started.timestamp()), body=body
        ),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": _host_header(target),
    }
    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)
    try:
        response = _pool(target, address).urlopen(
            "POST",
            target.path,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        return outcome(error=f"{type(exc).__name__}: {_short(exc)}")
    text, error = _read(response, deadline=clock + timeout)
    return outcome(status_code=response.status, body=text, error=error)


def _read(response: urllib3.BaseHTTPResponse, *, deadline: float) -> tuple[str, str]:
    """At most WEBHOOK_MAX_RESPONSE_BYTES of the body, within the deadline."""
    cap = int(settings.WEBHOOK_MAX_RESPONSE_BYTES)
    kept, size, error = bytearray(), 0, ""
    try:
        for chunk in response.stream(_CHUNK, decode_content=False):
            size += len(chunk)
            if len(kept) < STORED_RESPONSE_CHARS * 4:
                kept += chunk[: STORED_RESPONSE_CHARS * 4 - len(kept)]
            if size > cap:
                error = f"response larger than {cap} bytes: not read further"
                break
            if time.monotonic() > deadline:
                error = "timeout reading the response"
                break
    except urllib3.exceptions.HTTPError as exc:
        error = f"{type(exc).__name__}: {_short(exc)}"
    if error:
        response.close()  # never reused: the rest of the body was not read
    else:
        response.release_conn()
    return kept.decode("utf-8", errors="replace")[:STORED_RESPONSE_CHARS], error


def _short(exc: Exception) -> str:
    return str(exc)[:300]


def _host_header(target: Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


_pools: dict[tuple[str, str, str, int], urllib3.HTTPConnectionPool] = {}


def _pool(target: Target, address: str) -> urllib3.HTTPConnectionPool:
    """A kept-alive connection pool per (scheme, host, checked address, port)."""
    key = (target.scheme, target.host, address, target.port)
    pool = _pools.get(key)
    if pool is None:
        if len(_pools) >= 256:
            for old in _pools.values():
                old.close()
            _pools.clear()
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address,
                target.port,
                maxsize=4,
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(),
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, maxsize=4)
        _pools[key] = pool
    return pool


def retry_delay(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): exponential, capped, jittered."""
    base = float(settings.WEBHOOK_RETRY_BASE_SECONDS)
    cap = float(settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS)
    delay: float = min(cap, base * 2 ** min(attempt - 1, 30))
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def _record(claim: Claim, outcome: Outcome) -> str:
    now = timezone.now()
    with transaction.atomic():
        _relaxed_commit()
        attempt = WebhookAttempt(
            delivery_id=claim.delivery.pk,
            number=claim.number,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=outcome.error[:500],
            response_body=outcome.body,
            succeeded=outcome.succeeded,
        )
        insert_row(attempt)
        if outcome.succeeded and _record_success(claim, outcome, now):
            return "succeeded"
        delivery = WebhookDelivery.objects.select_for_update().get(pk=claim.delivery.pk)
        delivery.attempt_count = max(delivery.attempt_count, claim.number)
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error[:500]
        fields = ["attempt_count", "last_status_code", "last_error"]
        ours = (
            delivery.claim_token == claim.token
            and delivery.status == WebhookDelivery.Status.PENDING
        )
        if not ours:  # our lease lapsed and another attempt took over: it decides
            delivery.save(update_fields=fields)
            return "superseded"
        fields += ["status", "next_attempt_at", "locked_until", "claim_token", "delivered_at"]
        if outcome.succeeded:
            result = _succeeded(delivery, now)
        else:
            result = _failed(delivery, claim.endpoint, now)
        delivery.save(update_fields=fields)
    return result


def _record_success(claim: Claim, outcome: Outcome, now: datetime) -> bool:
    """The common case in one statement: still ours, so it is done. False: superseded."""
    updated = WebhookDelivery.objects.filter(
        pk=claim.delivery.pk, claim_token=claim.token, status=WebhookDelivery.Status.PENDING
    ).update(
        status=WebhookDelivery.Status.SUCCEEDED,
        attempt_count=claim.number,
        last_status_code=outcome.status_code,
        last_error=outcome.error[:500],
        delivered_at=now,
        next_attempt_at=None,
        locked_until=None,
        claim_token="",
    )
    if updated and claim.endpoint.failing_since is not None:
        WebhookEndpoint.objects.filter(pk=claim.endpoint.pk).update(failing_since=None)
    return bool(updated)


def _succeeded(delivery: WebhookDelivery, now: datetime) -> str:
    delivery.status = WebhookDelivery.Status.SUCCEEDED
    delivery.delivered_at = now
    delivery.next_attempt_at = delivery.locked_until = None
    delivery.claim_token = ""
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, failing_since__isnull=False).update(
        failing_since=None
    )
    return "succeeded"


def _failed(delivery: WebhookDelivery, endpoint: WebhookEndpoint, now: datetime) -> str:
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
        failing_since=now
    )
    _maybe_auto_disable(endpoint.pk, now)
    delivery.refresh_from_db(fields=["status"])  # disabling fails every pending delivery
    first = delivery.first_attempt_at or now
    window_end = first + timedelta(seconds=float(settings.WEBHOOK_RETRY_WINDOW_SECONDS))
    if delivery.status != WebhookDelivery.Status.PENDING or now >= window_end:
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.next_attempt_at = delivery.locked_until = None
        delivery.claim_token = ""
        return "failed"
    delay = retry_delay(delivery.attempt_count)
    delivery.next_attempt_at = min(now + timedelta(seconds=delay), window_end)
    if delay <= COUNTDOWN_LIMIT_SECONDS and not settings.CELERY_TASK_ALWAYS_EAGER:
        delivery.claim_token = random_secrets.token_hex(16)
        delivery.locked_until = _lease(delivery.next_attempt_at)
        job = [(delivery.pk, delivery.claim_token)]
        wait = max(0.0, (delivery.next_attempt_at - now).total_seconds())
        transaction.on_commit(partial(_enqueue, job, wait))
    else:  # the sweeper queues it when due (always so in-process: eager tasks cannot wait)
        delivery.claim_token = ""
        delivery.locked_until = None
    return "retrying"


def _maybe_auto_disable(endpoint_id: int, now: datetime) -> None:
    limit = now - timedelta(seconds=float(settings.WEBHOOK_AUTO_DISABLE_SECONDS))
    endpoint = (
        WebhookEndpoint.objects.select_for_update()
        .filter(pk=endpoint_id, is_enabled=True, failing_since__lte=limit)
        .first()
    )
    if endpoint is None or endpoint.failing_since is None:
        return
    failing_since = endpoint.failing_since
    reason = f"failing without a success since {failing_since.isoformat()}"
    _disable(endpoint, reason)
    endpoint.save()
    _audit(endpoint, "auto_disabled", reason=reason)
    publish(
        WebhookEndpointDisabled(
            marketplace_id=endpoint.marketplace_id,
            aggregate_id=endpoint.public_id,
            url=endpoint.url,
            reason=reason,
            failing_since=failing_since.isoformat(),
        )
    )
    logger.warning("Webhook endpoint %s disabled: %s", endpoint.public_id, reason)


# --- Replay -----------------------------------------------------------------------------------


def deliveries_replay(deliveries: QuerySet[WebhookDelivery]) -> list[WebhookDelivery]:
    """Send the given deliveries again (whatever their state), each with a fresh retry
    window; the attempts so far stay on record. Deliveries of disabled endpoints are left
    alone. Returns the deliveries queued."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            deliveries.select_for_update(of=("self",))
            .filter(endpoint__is_enabled=True, endpoint__deleted_at=None)
            .select_related("endpoint")
            .order_by("pk")
        )
        for delivery in rows:
            delivery.status = WebhookDelivery.Status.PENDING
            delivery.next_attempt_at = now
            delivery.first_attempt_at = None
            delivery.delivered_at = None
            delivery.locked_until = _lease(now)
            delivery.claim_token = random_secrets.token_hex(16)
        WebhookDelivery.objects.bulk_update(
            rows,
            [
                "status",
                "next_attempt_at",
                "first_attempt_at",
                "delivered_at",
                "locked_until",
                "claim_token",
            ],
        )
        by_endpoint: dict[int, list[WebhookDelivery]] = {}
        for delivery in rows:
            by_endpoint.setdefault(delivery.endpoint_id, []).append(delivery)
        for group in by_endpoint.values():
            replayed = [d.public_id for d in group]
            _audit(group[0].endpoint, "delivery_replayed", after={"deliveries": replayed})
        transaction.on_commit(partial(_enqueue, [(d.pk, d.claim_token) for d in rows]))
    return rows
