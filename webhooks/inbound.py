"""Inbound provider webhooks: verify, store (deduplicated), acknowledge; process in Celery.

Receiving does the least that is safe: the signature is checked on the raw bytes, the
message is stored under its provider message id (a redelivery finds the row and is
acknowledged as a duplicate), and processing is queued after commit. The provider gets its
2xx in milliseconds; a processing failure is ours to retry, not the provider's.
"""

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from providers.clients.errors import ProviderError
from providers.services.webhooks import airtm_event_apply
from webhooks import svix
from webhooks.models import InboundRejection, InboundWebhook
from webhooks.svix import WebhookSignatureError

logger = logging.getLogger(__name__)

AIRTM = "airtm"
_SIGNATURE_HEADERS = ("id", "timestamp", "signature")
REJECTION_EXCERPT_CHARS = 500
REJECTIONS_KEPT_PER_MINUTE = 60


def airtm_webhook_receive(
    *, headers: Mapping[str, str], body: bytes
) -> tuple[InboundWebhook, bool]:
    """Verify and store an Airtm (Svix) message; returns (row, created).

    Raises:
        WebhookSignatureError: not signed by Airtm with one of our secrets (nothing stored).
    """
    msg_id = svix.verify(
        headers=headers,
        body=body,
        secrets=settings.AIRTM_WEBHOOK_SECRETS,
        now=timezone.now(),
        tolerance_seconds=settings.AIRTM_WEBHOOK_TOLERANCE_SECONDS,
    )
    text = body.decode("utf-8", errors="replace")
    event_type, object_id, problem = _parse(text)
    kept_headers = _signature_headers(headers)
    try:
        with transaction.atomic():
            row = InboundWebhook.objects.create(
                provider=AIRTM,
                message_id=msg_id,
                event_type=event_type,
                object_id=object_id,
                body=text,
                headers=kept_headers,
                status=InboundWebhook.Status.IGNORED if problem else InboundWebhook.Status.RECEIVED,
                result=problem,
            )
            if not problem:
                transaction.on_commit(lambda: _enqueue(row.pk))
    except IntegrityError:  # a redelivery of a message we have
        InboundWebhook.objects.filter(provider=AIRTM, message_id=msg_id).update(
            deliveries=F("deliveries") + 1
        )
        return InboundWebhook.objects.get(provider=AIRTM, message_id=msg_id), False
    return row, True


def _signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        f"{prefix}-{name}": headers[f"{prefix}-{name}"][:500]
        for prefix in ("svix", "webhook")
        for name in _SIGNATURE_HEADERS
        if f"{prefix}-{name}" in headers
    }


def inbound_rejection_record(
    *, provider: str, headers: Mapping[str, str], body: bytes, error: WebhookSignatureError, ip: str
) -> InboundRejection | None:
    """Keep a refused message's verification result for the operators (the admin's refused
    inbound webhooks): the claimed id, why it failed, the signature headers, the body's digest
    and first characters.

    Anyone can send refused messages, so at most REJECTIONS_KEPT_PER_MINUTE a minute per
    provider are kept (None beyond that): a flood cannot fill the table.
    """
    recent = InboundRejection.objects.filter(
        provider=provider, received_at__gte=timezone.now() - timedelta(minutes=1)
    )
    if recent.count() >= REJECTIONS_KEPT_PER_MINUTE:
        logger.warning("Refused %s webhook not recorded: too many refusals this minute", provider)
        return None
    return InboundRejection.objects.create(
        provider=provider,
        message_id=svix.message_id(headers)[:200],
        code=error.code[:64],
        reason=error.message[:500],
        headers=_signature_headers(headers),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        body_excerpt=body[:REJECTION_EXCERPT_CHARS].decode("utf-8", errors="replace")[
            :REJECTION_EXCERPT_CHARS
        ],
        remote_addr=ip or None,
    )


def _parse(text: str) -> tuple[str, str, str]:
    """(event type, object id, problem); a message we cannot use is kept as IGNORED."""
    try:
        payload = json.loads(text, parse_float=Decimal)
    except ValueError:
        return "", "", "ignored: body is not JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return "", "", "ignored: no data object"
    event_type = str(payload.get("type") or "")[:64]
    return event_type, str(payload["data"].get("id") or "")[:64], ""


def _enqueue(webhook_id: int) -> None:
    from webhooks.tasks import inbound_webhook_process  # webhooks.tasks imports this module

    inbound_webhook_process.delay(webhook_id=webhook_id)


def inbound_webhook_process(*, webhook_id: int) -> InboundWebhook:
    """Process a stored message once. Safe to run again: a processed row is left alone.

    Raises:
        ProviderError: the provider could not be read; the row is FAILED and retried.
    """
    with transaction.atomic():
        row = InboundWebhook.objects.select_for_update().get(pk=webhook_id)
        if row.status in (InboundWebhook.Status.PROCESSED, InboundWebhook.Status.IGNORED):
            return row
        row.attempts += 1
        row.save(update_fields=["attempts"])
    payload: dict[str, Any] = json.loads(row.body, parse_float=Decimal)
    try:
        result = airtm_event_apply(event_type=row.event_type, data=payload["data"])
    except ProviderError as exc:
        _finish(row, InboundWebhook.Status.FAILED, f"{exc.code}: {exc.message}")
        raise
    status = (
        InboundWebhook.Status.IGNORED
        if result.startswith("ignored")
        else InboundWebhook.Status.PROCESSED
    )
    return _finish(row, status, result)


def _finish(row: InboundWebhook, status: str, result: str) -> InboundWebhook:
    row.status = status
    row.result = result[:500]
    row.processed_at = timezone.now()
    row.save(update_fields=["status", "result", "processed_at"])
    return row


def inbound_webhook_sweep(*, older_than_seconds: int = 300, max_attempts: int = 10) -> int:
    """Queue again the messages whose processing never finished (a lost task, a crash).

    Returns how many were queued. Processing is idempotent, so a message that is in fact
    still being processed is only looked at twice.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stuck = list(
        InboundWebhook.objects.filter(
            status__in=[InboundWebhook.Status.RECEIVED, InboundWebhook.Status.FAILED],
            received_at__lt=cutoff,
            attempts__lt=max_attempts,
        ).values_list("pk", flat=True)[:500]
    )
    for pk in stuck:
        _enqueue(pk)
    return len(stuck)
