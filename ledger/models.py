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
- A reconciliation case is open at most once per problem (`key`) [db: partial unique index]:
  a problem seen again by a later run adds to the open case instead of opening another.
- A manual adjustment moves money only as one balanced entry (`adjustment:<id>`), posted at
  most once; one above ADJUSTMENT_APPROVAL_THRESHOLD is posted only when a second staff
  member approves it [db: the approver is never the requester].
"""

from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
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
        permissions = [
            ("export_entries", "Can export ledger entries as CSV"),
            ("export_statement", "Can export user statements as CSV"),
        ]
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


class ReconciliationCase(models.Model):
    """A problem for finance to look at: the ledger disagrees with itself, with Airtm or with
    Trustless Work, or an object is stuck. Opened by the janitors and by verify_ledger
    (ledger.reconciliation), resolved by staff or cleared when a later run no longer sees it.
    """

    class Kind(models.TextChoices):
        LEDGER = "LEDGER", "Ledger inconsistency"
        AIRTM = "AIRTM", "Ledger and Airtm disagree"
        TRUSTLESS_WORK = "TRUSTLESS_WORK", "Ledger and Trustless Work disagree"
        STUCK = "STUCK", "Stuck object"

    class Status(models.TextChoices):
        OPEN = "OPEN", "Open"
        RESOLVED = "RESOLVED", "Resolved"

    class Resolution(models.TextChoices):
        FIXED = "FIXED", "Fixed (adjustment or operator action)"
        NO_ACTION = "NO_ACTION", "No action needed"
        CLEARED = "CLEARED", "Cleared: a later check no longer sees it"

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("rec_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=200)  # names the problem: "stuck:topup:topup_…"
    source = models.CharField(max_length=40)  # who opened it: verify_ledger, provider_janitor, …
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    occurrences = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assigned_to = models.CharField(max_length=150, blank=True)
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)
    resolution_note = models.TextField(blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    opened_at = models.DateTimeField(default=timezone.now, editable=False)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "reconciliation case"
        permissions = [
            ("resolve_reconciliationcase", "Can assign and resolve reconciliation cases")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(status="OPEN"), name="ledger_case_one_open_per_key"
            ),
        ]
        indexes = [models.Index(fields=["status", "kind", "-last_seen_at"])]

    def __str__(self) -> str:
        return f"{self.public_id} {self.kind} {self.status}"


class Adjustment(models.Model):
    """A manual correction of a user's available balance, with a reason, made by staff.

    Posted at once when at most ADJUSTMENT_APPROVAL_THRESHOLD, otherwise when a second staff
    member approves it (ledger.adjustments).
    """

    class Status(models.TextChoices):
        PENDING_APPROVAL = "PENDING_APPROVAL", "Waiting for a second approver"
        POSTED = "POSTED", "Posted"
        REJECTED = "REJECTED", "Rejected"

    class Direction(models.TextChoices):
        CREDIT = "credit", "Credit (add to the user's balance)"
        DEBIT = "debit", "Debit (take from the user's balance)"

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("adj_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    user = models.ForeignKey(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="adjustments"
    )
    direction = models.CharField(max_length=6, choices=Direction.choices)
    amount = _amount()
    currency = models.CharField(max_length=8)
    reason = models.TextField()
    case = models.ForeignKey(
        ReconciliationCase,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="adjustments",
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejection_reason = models.TextField(blank=True)
    entry = models.OneToOneField(
        JournalEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("approve_adjustment", "Can approve or reject other staff's adjustments")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_adjustment_positive"),
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=F("requested_by")),
                name="ledger_adjustment_four_eyes",
            ),
            models.CheckConstraint(
                condition=Q(status="POSTED", entry__isnull=False)
                | (~Q(status="POSTED") & Q(entry__isnull=True)),
                name="ledger_adjustment_posted_has_entry",
            ),
        ]
        indexes = [models.Index(fields=["status", "-id"])]

    def __str__(self) -> str:
        return f"{self.public_id} {self.direction} {self.amount} {self.currency} {self.status}"

    @property
    def money(self) -> Money:
        return Money(Decimal(self.amount).quantize(Money.zero(self.currency).unit), self.currency)

    @property
    def reference(self) -> str:
        """The ledger reference of its entry: posting twice returns the first entry."""
        return f"adjustment:{self.public_id}"
