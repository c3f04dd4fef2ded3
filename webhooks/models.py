"""Webhook data. Inbound: provider messages as received (stored before acknowledging, deduped
by the provider's message id, processed in Celery). Outbound marketplace webhooks join here.

Invariants:
- An inbound message is stored only after its signature verified; `(provider, message_id)` is
  unique, so a redelivered message is recognised and never processed twice.
- The raw body is kept byte for byte (as text): it is what the signature covered.
"""

from django.db import models
from django.utils import timezone


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
