"""Provider integrations' data: outbound call records, Airtm account links, top-ups and
withdrawals (the Airtm money flows).

Invariants:
- TopUp and Withdrawal statuses change only through their django-fsm transitions, called by
  providers.services inside a transaction that locks the row, posts the ledger entry and
  publishes the domain event (FSMField(protected=True) refuses direct assignment).
- Each top-up and withdrawal has a deterministic Airtm `code` (its own public id), sent on
  every create call, so a retried or uncertain call can be looked up instead of repeated.
- Ledger effects are posted with references derived from the public id
  (`topup:<id>:succeeded`, `withdrawal:<id>:requested|completed|returned`): each applies
  at most once whichever of request, webhook, refresh or janitor sees the fact first.
- ProviderCall rows are written outside business transactions (autocommit), so a call is
  recorded even when the change that made it rolls back. Bodies are stored redacted.
"""

from decimal import Decimal
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone
from django_fsm import FSMField, transition

from ledger.models import _amount
from ledger.money import Money
from orchestrator.ids import public_id_factory


class ProviderCall(models.Model):
    """One HTTP request to a provider, as sent and as answered (bodies redacted)."""

    provider = models.CharField(max_length=32)  # "airtm", "trustless_work"
    operation = models.CharField(max_length=64)  # "create_payin", "get_payout", ...
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    reference = models.CharField(max_length=100, blank=True)  # our object's id / Airtm code
    request_body = models.JSONField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)  # truncated
    outcome = models.CharField(max_length=24)  # ok, http_error, timeout, connection_error
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["reference"]),
            models.Index(fields=["provider", "-id"]),
        ]

    def __str__(self) -> str:
        return (
            f"{self.provider} {self.method} {self.path} -> {self.response_status or self.outcome}"
        )


class AirtmLink(models.Model):
    """A marketplace user's Airtm account, where withdrawals are paid (checked at Airtm)."""

    user = models.OneToOneField(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="airtm_link"
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    email = models.EmailField(max_length=254)
    airtm_user_id = models.CharField(max_length=64)
    airtm_status = models.CharField(max_length=16)  # "active" / "inactive" at the last check
    is_verified = models.BooleanField(default=False)
    country = models.CharField(max_length=3, blank=True)
    linked_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "Airtm link"

    def __str__(self) -> str:
        return f"{self.user_id} -> {self.email}"


class AirtmFlow(models.Model):
    """What a top-up and a withdrawal share: an amount of a user's money moving through Airtm.

    Each subclass declares its `public_id` (its prefix), `user`, its `status` state machine,
    FINAL (the statuses nothing leaves) and the Airtm object's id field.
    """

    FINAL: ClassVar[frozenset[str]]

    public_id: "models.CharField[str, str]"
    status: Any
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    amount = _amount()
    currency = models.CharField(max_length=8, default="USD")
    description = models.CharField(max_length=250, blank=True)
    airtm_status = models.CharField(max_length=32, blank=True)
    net_amount = models.DecimalField(max_digits=19, decimal_places=7, null=True, blank=True)
    airtm_fee = models.DecimalField(max_digits=19, decimal_places=7, null=True, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    canceled_by = models.CharField(max_length=16, blank=True)  # user, operator, timeout, airtm
    last_error = models.CharField(max_length=500, blank=True)  # last provider problem, if any
    sync_attempts = models.PositiveIntegerField(default=0)
    # Held while one process talks to Airtm about this object (see providers.services.lease).
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @property
    def code(self) -> str:
        """Our Airtm `code`: deterministic, so an uncertain create is looked up, not repeated
        (Airtm also refuses a second payin or payout with it)."""
        return self.public_id

    @property
    def money(self) -> Money:
        return Money(Decimal(self.amount).quantize(Money.zero(self.currency).unit), self.currency)

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class TopUp(AirtmFlow):
    """Money in: an Airtm payin that credits the user's available balance once confirmed."""

    class Status(models.TextChoices):
        CREATED = "TOPUP_CREATED", "Created"
        AWAITING_USER_CONFIRMATION = "TOPUP_AWAITING_USER_CONFIRMATION", "Awaiting user"
        PROCESSING = "TOPUP_PROCESSING", "Processing"
        SUCCEEDED = "TOPUP_SUCCEEDED", "Succeeded"
        FAILED = "TOPUP_FAILED", "Failed"
        CANCELED = "TOPUP_CANCELED", "Canceled"

    FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})
    WAITING = frozenset({Status.CREATED, Status.AWAITING_USER_CONFIRMATION})

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("topup_")
    )
    user = models.ForeignKey(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="topups"
    )
    status = FSMField(max_length=40, default=Status.CREATED, protected=True)
    airtm_payin_id = models.CharField(max_length=64, blank=True)
    confirmation_uri = models.URLField(max_length=500, blank=True)  # the Airtm checkout page
    return_url = models.URLField(max_length=500, blank=True)  # marketplace page after confirm
    cancel_url = models.URLField(max_length=500, blank=True)  # marketplace page after cancel
    payer_email = models.EmailField(max_length=254, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "top-up"
        indexes = [
            models.Index(fields=["marketplace", "-id"]),
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["airtm_payin_id"]),
        ]

    # Transitions. Only providers.services calls them (row locked, entry posted, event out).
    @transition(field=status, source=Status.CREATED, target=Status.AWAITING_USER_CONFIRMATION)
    def await_user(self) -> None:
        pass

    @transition(
        field=status,
        source=[Status.CREATED, Status.AWAITING_USER_CONFIRMATION],
        target=Status.PROCESSING,
    )
    def process(self) -> None:
        pass

    @transition(
        field=status,
        source=[Status.CREATED, Status.AWAITING_USER_CONFIRMATION, Status.PROCESSING],
        target=Status.SUCCEEDED,
    )
    def succeed(self) -> None:
        self.completed_at = timezone.now()

    @transition(
        field=status,
        source=[Status.CREATED, Status.AWAITING_USER_CONFIRMATION, Status.PROCESSING],
        target=Status.FAILED,
    )
    def fail(self, reason: str = "") -> None:
        self.failure_reason = reason[:500]
        self.completed_at = timezone.now()

    @transition(
        field=status,
        source=[Status.CREATED, Status.AWAITING_USER_CONFIRMATION],
        target=Status.CANCELED,
    )
    def cancel(self, by: str = "user") -> None:
        self.canceled_by = by
        self.completed_at = timezone.now()


class Withdrawal(AirtmFlow):
    """Money out: an Airtm payout of the user's funds to their linked Airtm account."""

    class Status(models.TextChoices):
        CREATED = "WITHDRAWAL_CREATED", "Created"
        COMMITTED = "WITHDRAWAL_COMMITTED", "Committed"
        PENDING = "WITHDRAWAL_PENDING", "Pending"
        PENDING_USER_ACTION = "WITHDRAWAL_PENDING_USER_ACTION", "Pending user action"
        COMPLETED = "WITHDRAWAL_COMPLETED", "Completed"
        FAILED = "WITHDRAWAL_FAILED", "Failed"
        CANCELED = "WITHDRAWAL_CANCELED", "Canceled"

    FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})
    IN_FLIGHT = (Status.CREATED, Status.COMMITTED, Status.PENDING, Status.PENDING_USER_ACTION)

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("wd_")
    )
    user = models.ForeignKey(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="withdrawals"
    )
    destination_email = models.EmailField(max_length=254)
    status = FSMField(max_length=40, default=Status.CREATED, protected=True)
    commit_requested = models.BooleanField(default=False)  # commit when the payout exists
    airtm_payout_id = models.CharField(max_length=64, blank=True)
    reason_code = models.CharField(max_length=16, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["marketplace", "-id"]),
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["airtm_payout_id"]),
        ]

    @transition(field=status, source=Status.CREATED, target=Status.COMMITTED)
    def commit(self) -> None:
        self.committed_at = timezone.now()

    @transition(
        field=status,
        source=[Status.CREATED, Status.COMMITTED, Status.PENDING_USER_ACTION],
        target=Status.PENDING,
    )
    def process(self) -> None:
        self.committed_at = self.committed_at or timezone.now()

    @transition(
        field=status,
        source=[Status.CREATED, Status.COMMITTED, Status.PENDING],
        target=Status.PENDING_USER_ACTION,
    )
    def await_user(self) -> None:
        self.committed_at = self.committed_at or timezone.now()

    @transition(field=status, source=list(IN_FLIGHT), target=Status.COMPLETED)
    def complete(self) -> None:
        self.completed_at = timezone.now()

    @transition(field=status, source=list(IN_FLIGHT), target=Status.FAILED)
    def fail(self, reason: str = "", reason_code: str = "") -> None:
        self.failure_reason = reason[:500]
        self.reason_code = reason_code[:16]
        self.completed_at = timezone.now()

    @transition(
        field=status,
        source=[Status.CREATED, Status.COMMITTED, Status.PENDING, Status.PENDING_USER_ACTION],
        target=Status.CANCELED,
    )
    def cancel(self, by: str = "user") -> None:
        self.canceled_by = by
        self.completed_at = timezone.now()


def snapshot(obj: TopUp | Withdrawal) -> dict[str, Any]:
    """The fields an audit row keeps of a top-up or withdrawal."""
    return {
        "id": obj.public_id,
        "status": obj.status,
        "amount": obj.money.text(),
        "currency": obj.currency,
        "airtm_status": obj.airtm_status,
        "failure_reason": obj.failure_reason,
    }


class StellarKey(models.Model):
    """A Stellar account whose secret seed we hold: a marketplace role, or a user's wallet.

    The seed is sealed with envelope encryption (providers.stellar.keys): a random data key
    encrypts it with AES-GCM, and a master key from settings wraps the data key. Only
    `public_key` is ever shown; the sealed bytes are decrypted in memory to sign, never
    logged or returned. Rows are created by providers.stellar.keys services only.
    """

    class Role(models.TextChoices):
        PLATFORM = "platform", "Platform (deployer, platform address, fee receiver)"
        RELEASE_SIGNER = "release_signer", "Release signer"
        DISPUTE_RESOLVER = "dispute_resolver", "Dispute resolver"
        APPROVER = "approver", "Approver"
        SERVICE_PROVIDER = "service_provider", "Service provider"
        TREASURY = "treasury", "Treasury (funds escrows)"
        USER = "user", "User wallet"

    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    user = models.ForeignKey(
        "orchestrator.MarketplaceUser",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    role = models.CharField(max_length=24, choices=Role.choices)
    public_key = models.CharField(max_length=56, unique=True, editable=False)
    # nonce || AES-GCM(data key, raw 32-byte seed); the data key sealed under a master key.
    sealed_seed = models.BinaryField(editable=False)
    wrapped_data_key = models.BinaryField(editable=False)
    master_key_id = models.CharField(max_length=16, editable=False)  # which master key wraps
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace", "role"],
                condition=models.Q(user__isnull=True),
                name="providers_stellarkey_one_per_role",
            ),
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(user__isnull=False),
                name="providers_stellarkey_one_per_user",
            ),
            models.CheckConstraint(
                condition=(models.Q(role="user") & models.Q(user__isnull=False))
                | (~models.Q(role="user") & models.Q(user__isnull=True)),
                name="providers_stellarkey_user_iff_user_role",
            ),
        ]
        indexes = [models.Index(fields=["master_key_id"])]

    def __str__(self) -> str:
        return f"{self.role} {self.public_key}"

    def __repr__(self) -> str:
        return f"<StellarKey {self.role} {self.public_key}>"
