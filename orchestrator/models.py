"""Platform data: tenants, their API keys and users, idempotency records, the domain-event
outbox and the audit log.

Invariants:
- Every tenant-owned row carries `marketplace`; selectors filter by it, so another
  marketplace's ids answer 404.
- API key secrets are never stored: only a SHA-256 digest of the whole key.
- Events and audit rows are append-only (a PostgreSQL trigger refuses UPDATE and DELETE),
  and each is written in the transaction of the change it describes.
"""

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from orchestrator.ids import public_id_factory


def _public_id(prefix: str) -> models.CharField[str, str]:
    return models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory(prefix)
    )


class Marketplace(models.Model):
    """A tenant: one marketplace running on this orchestrator."""

    public_id = _public_id("mkt_")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    is_active = models.BooleanField(default=True)
    # Platform fee in basis points of an order's amount (100 = 1%), taken on release.
    platform_fee_bps = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return self.name


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    SUPPORT = "support", "Support"
    ADMIN = "admin", "Admin"


# A scope grants itself and what it lists here: admin passes every check, write and
# support may also read.
SCOPE_GRANTS: dict[str, frozenset[str]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.READ}),
    Scope.SUPPORT: frozenset({Scope.SUPPORT, Scope.READ}),
    Scope.ADMIN: frozenset(Scope.values),
}


def hash_api_key(raw_key: str) -> str:
    # Keys carry 192 random bits, so a plain digest is enough; no salt or stretching needed.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A marketplace's credential. The raw key is shown once, at creation."""

    KEY_PREFIX: ClassVar[str] = "ohk_"

    public_id = _public_id("key_")
    marketplace = models.ForeignKey(Marketplace, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=200)
    environment = models.CharField(
        max_length=4, choices=[("live", "Live"), ("test", "Test")], default="test"
    )
    scopes = models.JSONField(default=list)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=16, editable=False)  # last characters, for humans
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        permissions = [("revoke_apikey", "Can revoke API keys")]

    def __str__(self) -> str:
        return f"{self.name} (…{self.hint})"

    @classmethod
    def build(
        cls,
        *,
        marketplace: Marketplace,
        name: str,
        scopes: list[str],
        environment: str,
        expires_at: datetime | None = None,
    ) -> tuple["ApiKey", str]:
        """An unsaved key and its raw value, `ohk_<env>_<public id>_<secret>`."""
        key = cls(
            marketplace=marketplace,
            name=name,
            scopes=sorted(set(scopes)),
            environment=environment,
            expires_at=expires_at,
        )
        raw = f"{cls.KEY_PREFIX}{environment}_{key.public_id}_{secrets.token_hex(24)}"
        key.key_hash = hash_api_key(raw)
        key.hint = raw[-4:]
        return key, raw

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.key_hash, hash_api_key(raw_key))

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def grants(self, scope: str) -> bool:
        return any(scope in SCOPE_GRANTS.get(held, frozenset()) for held in self.scopes)


class MarketplaceUser(models.Model):
    """An end user of a marketplace (buyer, seller or both)."""

    class Type(models.TextChoices):
        BUYER = "BUYER", "Buyer"
        SELLER = "SELLER", "Seller"
        BOTH = "BOTH", "Buyer and seller"

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        SUSPENDED = "SUSPENDED", "Suspended"

    public_id = _public_id("usr_")
    marketplace = models.ForeignKey(Marketplace, on_delete=models.PROTECT, related_name="users")
    external_user_id = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.BOTH)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "user"
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace", "external_user_id"], name="user_external_id_unique"
            )
        ]
        indexes = [models.Index(fields=["marketplace", "-id"])]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.external_user_id})"


class IdempotencyRecord(models.Model):
    """The first answer to a mutating request carrying an Idempotency-Key."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # SHA-256 of the raw body
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "method", "path", "key"], name="idempotency_scope_unique"
            )
        ]
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"


class Event(models.Model):
    """The domain-event outbox: one row per fact, written in the transaction that made it true.

    The integer primary key is the global sequence: SSE and webhook dispatch read in its order.
    """

    public_id = _public_id("evt_")
    marketplace = models.ForeignKey(
        Marketplace, null=True, on_delete=models.PROTECT, related_name="events"
    )
    type = models.CharField(max_length=100)
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=40)
    user_ids = models.JSONField(default=list)  # public ids of the users it concerns, for filters
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    request_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["marketplace", "id"]),
            models.Index(fields=["aggregate_type", "aggregate_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.public_id,
            "type": self.type,
            "created_at": self.created_at,
            "aggregate": {"type": self.aggregate_type, "id": self.aggregate_id},
            "data": self.payload,
        }


class AuditLog(models.Model):
    """Append-only record of who changed what, with redacted before/after snapshots."""

    public_id = _public_id("aud_")
    marketplace = models.ForeignKey(
        Marketplace, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_kind = models.CharField(max_length=16)
    actor_id = models.CharField(max_length=150)
    request_id = models.CharField(max_length=100, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=40)
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["marketplace", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"


def api_key_environment() -> str:
    return str(settings.API_KEY_ENVIRONMENT)
