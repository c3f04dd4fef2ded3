"""Webhook data. Inbound: provider messages as received (stored before acknowledging, deduped
by the provider's message id, processed in Celery). Outbound: marketplaces' endpoints, their
sealed secrets, one delivery per (event, endpoint) and every attempt of it.

Invariants:
- An inbound message is stored only after its signature verified; `(provider, message_id)` is
  unique, so a redelivered message is recognised and never processed twice.
- A message whose signature does not verify is never stored as an InboundWebhook nor
  processed; an InboundRejection records the refusal (claimed id, reason, body digest).
- The raw body is kept byte for byte (as text): it is what the signature covered.
- Outbound secrets are stored sealed (never in clear) and shown once, when made.
- A delivery row exists exactly when its event does (same transaction), one per endpoint.
"""

from django.db import models
from django.utils import timezone

from orchestrator.ids import public_id_factory


class InboundWebhook(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "RECEIVED", "Received"
        PROCESSED = "PROCESSED", "Processed"
        IGNORED = "IGNORED", "Ignored"  # verified, but about nothing of ours
        FAILED = "FAILED", "Failed"  # processing raised; retried by the task

    provider = models.CharField(max_length=32)
    message_id = models.CharField(max_length=200)  # svix-id: the same on every redelivery
    event_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)  # the provider's payin/payout id
    body = models.TextField()
    headers = models.JSONField(default=dict)  # signature headers, for the operator
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    result = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    deliveries = models.PositiveIntegerField(default=1)  # times the provider sent it
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "inbound webhook"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "message_id"], name="inbound_webhook_message_unique"
            )
        ]
        indexes = [models.Index(fields=["status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type} {self.message_id}"


class InboundRejection(models.Model):
    """A provider webhook refused at the door: its signature did not verify (or its
    signature headers were missing). Kept so operators can tell a forged or misconfigured
    sender (a rotated secret, a skewed clock) from a message that never came; the body is
    not trusted and only its digest and first characters are kept."""

    provider = models.CharField(max_length=32)
    message_id = models.CharField(max_length=200, blank=True)  # as claimed, unverified
    code = models.CharField(max_length=64)  # WEBHOOK_SIGNATURE_INVALID, ...
    reason = models.CharField(max_length=500)
    headers = models.JSONField(default=dict)  # the signature headers as received
    body_sha256 = models.CharField(max_length=64)
    body_size = models.PositiveIntegerField(default=0)
    body_excerpt = models.CharField(max_length=500, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "rejected inbound webhook"
        indexes = [models.Index(fields=["provider", "-received_at"])]

    def __str__(self) -> str:
        return f"{self.provider} {self.code} {self.message_id}"


class WebhookEndpoint(models.Model):
    """A marketplace's receiver of signed event deliveries.

    `event_types` holds patterns: exact types ("order.released"), prefixes ("order.*") or
    "*" for everything. An endpoint is never hard-deleted (its deliveries keep their
    history): deleting sets `deleted_at`, after which the API answers 404 for it.
    """

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("whk_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    event_types = models.JSONField(default=list)
    is_enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # First failure since the last success; None while deliveries succeed.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook endpoint"
        indexes = [models.Index(fields=["marketplace", "-id"])]

    def __str__(self) -> str:
        return f"{self.public_id} {self.url}"


class WebhookSecret(models.Model):
    """A signing secret of an endpoint, sealed at rest (webhooks.secrets).

    The current secret has no `expires_at`. Rotation gives the previous one an expiry
    (the overlap window); until then deliveries carry a signature for each.
    """

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="secrets")
    sealed = models.TextField()  # Fernet token of the "whsec_..." string
    hint = models.CharField(max_length=8)  # last characters, for humans
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["endpoint", "expires_at"])]

    def __str__(self) -> str:
        return f"secret …{self.hint} of {self.endpoint_id}"


class WebhookDelivery(models.Model):
    """The outbox row of one event for one endpoint, written in the event's transaction.

    A Celery task claims it (`FOR UPDATE SKIP LOCKED`, then a lease in `locked_until`),
    posts it and records the attempt. A lease that expires (the worker died) lets the sweeper
    queue it again, so a delivery is sent at least once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # waiting for its next attempt
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # retries exhausted, or the endpoint was disabled

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("dlv_")
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries"
    )
    event = models.ForeignKey("orchestrator.Event", on_delete=models.PROTECT, related_name="+")
    event_type = models.CharField(max_length=100)  # copied from the event, for filters
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Lease: a queued or running task owns the row until then; `claim_token` names it.
    locked_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        permissions = [("replay_delivery", "Can replay webhook deliveries")]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_event_endpoint")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["endpoint", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.event_type} -> {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery and what came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)  # transport error or refusal
    response_body = models.TextField(blank=True)  # the first bytes only
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["delivery", "number"])]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"
