"""Double-entry ledger.

Invariants (those marked [db] are enforced by PostgreSQL, see migration 0002):

- Every movement is a JournalEntry with 2+ Postings whose signed amounts sum to zero per
  currency [db: deferred constraint trigger, checked at COMMIT].
- Postings are never updated or deleted; entries are never deleted and only their seal
  (sequence, prev_hash, hash) is written, once [db: triggers]. Mistakes are corrected by
  reversing entries.
- `reference` is unique per marketplace [db]: posting the same business fact twice returns
  the first entry and moves nothing.
- Bounded accounts (user accounts) never go negative [db: CHECK] and their `balance` is the
  sum of their postings, changed only by the posting path (ledger.services, ledger.sql and
  its PostgreSQL function ledger_post_entry) under a row lock.
- Unbounded system accounts (clearing, fees, escrow, adjustments) are never row-locked: their
  balance is spread over SHARDS rows in AccountShard, each changed by an atomic increment
  of a shard no concurrent entry holds (PostgreSQL: SKIP LOCKED), so concurrent entries
  touching one system account do not queue behind each other.
- Entries are hash-chained per marketplace in seal order (ledger.services.ledger_seal):
  hash = sha256(prev_hash + canonical entry). Sealing runs after commit, outside the posting
  transaction, so the chain never serialises money movement.
"""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from ledger.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, Money
from orchestrator.ids import public_id_factory

SHARDS = 16


def _amount(default: Decimal | None = None) -> "models.DecimalField[Decimal, Decimal]":
    if default is None:
        return models.DecimalField(
            max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES
        )
    return models.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, default=default
    )


class Account(models.Model):
    class Kind(models.TextChoices):
        AVAILABLE = "available", "Available"
        RESERVED = "reserved", "Reserved"
        WITHDRAWAL_PENDING = "withdrawal_pending", "Withdrawal pending"
        SYSTEM = "system", "System"

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("acc_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    user = models.ForeignKey(
        "orchestrator.MarketplaceUser",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_accounts",
    )
    user_public_id = models.CharField(max_length=40, blank=True, editable=False)  # for events
    kind = models.CharField(max_length=24, choices=Kind.choices)
    code = models.CharField(max_length=120, blank=True)  # system accounts: "platform_fees", ...
    currency = models.CharField(max_length=8)
    allow_negative = models.BooleanField(default=False)
    balance = _amount(default=Decimal(0))  # bounded accounts only; see AccountShard
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=0),
                name="ledger_account_balance_not_negative",
            ),
            models.CheckConstraint(
                condition=(Q(kind="system") & Q(user__isnull=True) & ~Q(code=""))
                | (~Q(kind="system") & Q(user__isnull=False) & Q(allow_negative=False)),
                name="ledger_account_owner_matches_kind",
            ),
            models.UniqueConstraint(
                fields=["marketplace", "user", "kind", "currency"],
                condition=Q(user__isnull=False),
                name="ledger_account_user_kind_unique",
            ),
            models.UniqueConstraint(
                fields=["marketplace", "code", "currency"],
                condition=Q(user__isnull=True),
                name="ledger_account_system_code_unique",
            ),
        ]

    def __str__(self) -> str:
        owner = self.code if self.user_id is None else f"user {self.user_id} {self.kind}"
        return f"{owner} [{self.currency}]"

    @property
    def is_bounded(self) -> bool:
        return not self.allow_negative


class AccountShard(models.Model):
    """One slice of an unbounded account's balance; the balance is the sum of its shards."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="shards")
    shard = models.PositiveSmallIntegerField()
    balance = _amount(default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "shard"], name="ledger_shard_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}#{self.shard}"


class JournalEntry(models.Model):
    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("je_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(max_length=200)
    kind = models.CharField(max_length=60)  # "topup", "reserve", "adjustment.credit", ...
    memo = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The seal, written once by ledger_seal after commit.
    sequence = models.BigIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "journal entries"
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace", "reference"], name="ledger_entry_reference_unique"
            ),
            models.UniqueConstraint(
                fields=["marketplace", "sequence"], name="ledger_entry_sequence_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["marketplace", "id"], condition=Q(hash=""), name="ledger_unsealed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.reference}"


class Posting(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings")
    amount = _amount()  # signed: positive in, negative out
    currency = models.CharField(max_length=8)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_posting_amount_not_zero")
        ]
        indexes = [models.Index(fields=["account", "-id"])]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount} {self.currency}"

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class ChainHead(models.Model):
    """The last sealed entry of a marketplace's hash chain."""

    marketplace = models.OneToOneField(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.marketplace_id}@{self.sequence}"


class Hold(models.Model):
    """A reservation of a user's available funds, moved to their reserved account.

    It resolves at most once: captured (fully or partly; the rest returns), voided, or expired.
    """

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        CAPTURED = "CAPTURED", "Captured"
        VOIDED = "VOIDED", "Voided"
        EXPIRED = "EXPIRED", "Expired"

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("hld_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    user = models.ForeignKey(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="holds"
    )
    reference = models.CharField(max_length=200)
    amount = _amount()
    currency = models.CharField(max_length=8)
    captured_amount = _amount(default=Decimal(0))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    place_entry = models.ForeignKey(
        JournalEntry, on_delete=models.PROTECT, related_name="+", null=True
    )
    resolve_entry = models.ForeignKey(
        JournalEntry, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace", "reference"], name="ledger_hold_reference_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_amount__gte=0) & Q(captured_amount__lte=F("amount")),
                name="ledger_hold_capture_within_amount",
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(status="ACTIVE"), name="ledger_hold_due"
            )
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.amount} {self.currency} {self.status}"

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)
