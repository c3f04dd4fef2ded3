"""Escrowed orders: orders, their Trustless Work escrow, milestones, disputes, chain steps.

Invariants:
- Statuses change only through the django-fsm transitions below (FSMField(protected=True)
  refuses direct assignment), called by escrow.services inside a transaction that locks the
  order row, posts the ledger entry, writes the audit row and publishes the event.
- An order's amount is in USD (cents) and goes on chain 1:1 as USDC (see escrow.fees for
  how the contract's fees map onto the ledger).
- Every call to Trustless Work is a ChainStep row written before the call: a retried task,
  a restarted worker or the janitor finds the step and continues it. A step's signed
  envelope is stored before it is submitted, so a step never submits a second, different
  transaction while the first could still land (escrow.services.steps).
- The escrow's engagement id is the order's public id: how an uncertain deploy is found.
- Staff notes on a dispute (DisputeNote) are only ever added, never edited or deleted.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import FSMField, transition

from ledger.models import _amount
from ledger.money import Money
from orchestrator.ids import public_id_factory


class Order(models.Model):
    class Status(models.TextChoices):
        CREATED = "ORDER_CREATED", "Created"
        FUNDS_RESERVED = "FUNDS_RESERVED", "Funds reserved"
        ESCROW_CREATING = "ESCROW_CREATING", "Escrow being created"
        ESCROW_FUNDING = "ESCROW_FUNDING", "Escrow being funded"
        ESCROW_FUNDED = "ESCROW_FUNDED", "Escrow funded"
        IN_PROGRESS = "IN_PROGRESS", "In progress"
        RELEASE_REQUESTED = "RELEASE_REQUESTED", "Release requested"
        RELEASED = "RELEASED", "Released"
        REFUND_REQUESTED = "REFUND_REQUESTED", "Refund requested"
        REFUNDED = "REFUNDED", "Refunded"
        DISPUTED = "DISPUTED", "Disputed"
        CLOSED = "CLOSED", "Closed"

    class Outcome(models.TextChoices):
        NONE = "", "Open"
        CANCELED = "CANCELED", "Canceled before escrow"
        RELEASED = "RELEASED", "Released to the seller"
        REFUNDED = "REFUNDED", "Refunded to the buyer"
        SPLIT = "SPLIT", "Split by a dispute decision"

    S = Status
    # Cancel is allowed until money is on its way to the chain ("only before escrow").
    CANCELABLE = (S.CREATED, S.FUNDS_RESERVED, S.ESCROW_CREATING)

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("ord_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    buyer = models.ForeignKey(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="orders_bought"
    )
    seller = models.ForeignKey(
        "orchestrator.MarketplaceUser", on_delete=models.PROTECT, related_name="orders_sold"
    )
    amount = _amount()
    currency = models.CharField(max_length=8, default="USD")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    client_order_ref = models.CharField(max_length=200, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = FSMField(max_length=24, default=Status.CREATED, protected=True)
    # The marketplace's fee when the order was made: the escrow is deployed with it.
    platform_fee_bps = models.PositiveIntegerField(default=0)
    hold = models.OneToOneField(
        "ledger.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True, default="")
    cancel_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace", "client_order_ref"],
                condition=Q(client_order_ref__isnull=False),
                name="escrow_order_client_ref_unique",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="escrow_order_amount_positive"),
            models.CheckConstraint(
                condition=~Q(buyer=models.F("seller")), name="escrow_order_buyer_is_not_seller"
            ),
        ]
        indexes = [
            models.Index(fields=["marketplace", "-id"]),
            models.Index(fields=["marketplace", "status", "-id"]),
            models.Index(fields=["buyer", "-id"]),
            models.Index(fields=["seller", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @property
    def money(self) -> Money:
        return Money(Decimal(self.amount).quantize(Money.zero(self.currency).unit), self.currency)

    # Transitions. Only escrow.services calls them (row locked, entry posted, event out).
    @transition(field=status, source=S.CREATED, target=S.FUNDS_RESERVED)
    def reserve(self) -> None:
        pass

    @transition(field=status, source=list(CANCELABLE), target=S.CLOSED)
    def cancel(self, reason: str = "") -> None:
        self.outcome = self.Outcome.CANCELED
        self.cancel_reason = reason[:500]
        self.closed_at = timezone.now()

    @transition(field=status, source=S.FUNDS_RESERVED, target=S.ESCROW_CREATING)
    def create_escrow(self) -> None:
        pass

    @transition(field=status, source=[S.ESCROW_CREATING, S.ESCROW_FUNDING], target=S.FUNDS_RESERVED)
    def escrow_failed(self) -> None:
        pass

    @transition(field=status, source=S.ESCROW_CREATING, target=S.ESCROW_FUNDING)
    def fund_escrow(self) -> None:
        pass

    @transition(field=status, source=S.ESCROW_FUNDING, target=S.ESCROW_CREATING)
    def funding_failed(self) -> None:
        pass

    @transition(field=status, source=S.ESCROW_FUNDING, target=S.ESCROW_FUNDED)
    def escrow_funded(self) -> None:
        pass

    @transition(field=status, source=S.ESCROW_FUNDED, target=S.IN_PROGRESS)
    def start_work(self) -> None:
        pass

    @transition(field=status, source=S.IN_PROGRESS, target=S.RELEASE_REQUESTED)
    def request_release(self) -> None:
        pass

    @transition(field=status, source=S.RELEASE_REQUESTED, target=S.IN_PROGRESS)
    def resume_work(self) -> None:
        """A release failed, or paid some milestones of a multi-release escrow only."""

    @transition(field=status, source=[S.RELEASE_REQUESTED, S.DISPUTED], target=S.RELEASED)
    def released(self, outcome: str = Outcome.RELEASED) -> None:
        self.outcome = outcome

    @transition(field=status, source=S.IN_PROGRESS, target=S.REFUND_REQUESTED)
    def request_refund(self) -> None:
        pass

    @transition(field=status, source=[S.REFUND_REQUESTED, S.DISPUTED], target=S.REFUNDED)
    def refunded(self) -> None:
        self.outcome = self.Outcome.REFUNDED

    @transition(field=status, source=S.IN_PROGRESS, target=S.DISPUTED)
    def dispute(self) -> None:
        pass

    @transition(field=status, source=[S.RELEASED, S.REFUNDED], target=S.CLOSED)
    def close(self) -> None:
        self.closed_at = timezone.now()


class Escrow(models.Model):
    """The order's Trustless Work escrow contract, as far as the chain has confirmed it."""

    class Status(models.TextChoices):
        CREATING = "CREATING", "Being deployed"
        CREATED = "CREATED", "Deployed, empty"
        FUNDING = "FUNDING", "Being funded"
        FUNDED = "FUNDED", "Funded"
        RELEASING = "RELEASING", "Being released"
        REFUNDING = "REFUNDING", "Being refunded"
        DISPUTED = "DISPUTED", "In dispute"
        RELEASED = "RELEASED", "Released"
        REFUNDED = "REFUNDED", "Refunded"
        RESOLVED = "RESOLVED", "Resolved by a dispute decision"
        FAILED = "FAILED", "Deployment failed"
        ABANDONED = "ABANDONED", "Order canceled before funding"

    class Kind(models.TextChoices):
        SINGLE = "single-release", "Single release"
        MULTI = "multi-release", "Multi release (per milestone)"

    S = Status
    FINAL = frozenset({S.RELEASED, S.REFUNDED, S.RESOLVED, S.ABANDONED})

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("esc_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="escrow")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = FSMField(max_length=12, default=Status.CREATING, protected=True)
    contract_id = models.CharField(max_length=56, blank=True)
    engagement_id = models.CharField(max_length=40)  # the order's public id
    amount = _amount()  # USDC, equal to the order's amount
    platform_fee_bps = models.PositiveIntegerField(default=0)
    # Addresses by role: approver, service_provider, platform_address, release_signer,
    # dispute_resolver, receiver, funder.
    roles = models.JSONField(default=dict, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    needs_attention = models.BooleanField(default=False)
    # Held while one process talks to Trustless Work about this escrow.
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    funded_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["contract_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @property
    def usdc(self) -> Money:
        return Money(Decimal(self.amount).quantize(Decimal("0.0000001")), "USDC")

    @transition(field=status, source=S.CREATING, target=S.CREATED)
    def deployed(self, contract_id: str) -> None:
        self.contract_id = contract_id

    @transition(field=status, source=S.CREATING, target=S.FAILED)
    def deploy_failed(self) -> None:
        pass

    @transition(field=status, source=S.FAILED, target=S.CREATING)
    def redeploy(self) -> None:
        self.contract_id = ""

    @transition(field=status, source=[S.CREATING, S.CREATED, S.FAILED], target=S.ABANDONED)
    def abandon(self) -> None:
        pass

    @transition(field=status, source=S.CREATED, target=S.FUNDING)
    def start_funding(self) -> None:
        pass

    @transition(field=status, source=S.FUNDING, target=S.CREATED)
    def funding_failed(self) -> None:
        pass

    @transition(field=status, source=S.FUNDING, target=S.FUNDED)
    def funded(self) -> None:
        self.funded_at = timezone.now()

    @transition(field=status, source=S.FUNDED, target=S.RELEASING)
    def start_release(self) -> None:
        pass

    @transition(field=status, source=S.RELEASING, target=S.FUNDED)
    def release_stopped(self) -> None:
        """A release failed, or paid some milestones of a multi-release escrow only."""

    @transition(field=status, source=S.RELEASING, target=S.RELEASED)
    def released(self) -> None:
        self.released_at = timezone.now()

    @transition(field=status, source=S.FUNDED, target=S.REFUNDING)
    def start_refund(self) -> None:
        pass

    @transition(field=status, source=[S.FUNDED, S.REFUNDING], target=S.DISPUTED)
    def disputed(self) -> None:
        pass

    @transition(field=status, source=[S.DISPUTED, S.REFUNDING], target=S.REFUNDED)
    def refunded(self) -> None:
        self.refunded_at = timezone.now()

    @transition(field=status, source=S.DISPUTED, target=S.RESOLVED)
    def resolved(self) -> None:
        self.resolved_at = timezone.now()


class Milestone(models.Model):
    """A part of the order's work. Multi-release escrows pay each milestone on its own."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        COMPLETED = "COMPLETED", "Completed by the seller"
        APPROVED = "APPROVED", "Approved by the buyer"
        RELEASED = "RELEASED", "Paid to the seller"
        RESOLVED = "RESOLVED", "Settled by a refund or dispute decision"

    S = Status

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("ms_")
    )
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="milestones")
    ref = models.CharField(max_length=100)  # the marketplace's milestone_ref
    index = models.PositiveSmallIntegerField()  # position on chain
    title = models.CharField(max_length=200)
    amount = _amount()
    status = FSMField(max_length=10, default=Status.PENDING, protected=True)
    evidence = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order", "index"]
        constraints = [
            models.UniqueConstraint(fields=["order", "ref"], name="escrow_milestone_ref_unique"),
            models.UniqueConstraint(
                fields=["order", "index"], name="escrow_milestone_index_unique"
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="escrow_milestone_amount_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ref} {self.status}"

    @property
    def money(self) -> Money:
        return Money(Decimal(self.amount).quantize(Decimal("0.01")), "USD")

    @transition(field=status, source=S.PENDING, target=S.COMPLETED)
    def complete(self, evidence: str = "") -> None:
        self.evidence = evidence[:500]
        self.completed_at = timezone.now()

    @transition(field=status, source=S.COMPLETED, target=S.APPROVED)
    def approve(self) -> None:
        self.approved_at = timezone.now()

    @transition(field=status, source=S.APPROVED, target=S.RELEASED)
    def release(self) -> None:
        self.released_at = timezone.now()

    @transition(field=status, source=[S.PENDING, S.COMPLETED, S.APPROVED], target=S.RESOLVED)
    def resolve(self) -> None:
        pass


class Dispute(models.Model):
    class Status(models.TextChoices):
        OPEN = "OPEN", "Open"
        UNDER_REVIEW = "UNDER_REVIEW", "Under review"
        RESOLVED = "RESOLVED", "Resolved"

    class Decision(models.TextChoices):
        FULL_RELEASE = "FULL_RELEASE", "Everything to the seller"
        FULL_REFUND = "FULL_REFUND", "Everything back to the buyer"
        SPLIT = "SPLIT", "Split between seller and buyer"

    class Party(models.TextChoices):
        BUYER = "BUYER", "Buyer"
        SELLER = "SELLER", "Seller"

    class Reason(models.TextChoices):
        NOT_DELIVERED = "NOT_DELIVERED", "Not delivered"
        QUALITY_ISSUE = "QUALITY_ISSUE", "Quality issue"
        OTHER = "OTHER", "Other"

    S = Status

    public_id = models.CharField(
        max_length=40, unique=True, editable=False, default=public_id_factory("dsp_")
    )
    marketplace = models.ForeignKey(
        "orchestrator.Marketplace", on_delete=models.PROTECT, related_name="+"
    )
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="disputes")
    opened_by = models.CharField(max_length=8, choices=Party.choices)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    description = models.TextField(blank=True)
    evidence = models.JSONField(default=list, blank=True)
    status = FSMField(max_length=12, default=Status.OPEN, protected=True)
    assigned_to = models.CharField(max_length=200, blank=True)
    # The staff user working on it, when assigned in the back-office (the API names a
    # person in `assigned_to` only).
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="assigned_disputes",
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    # The decision, set when support resolves; the money moves once the chain confirms.
    decision = models.CharField(max_length=12, choices=Decision.choices, blank=True)
    release_amount = models.DecimalField(max_digits=19, decimal_places=7, null=True, blank=True)
    refund_amount = models.DecimalField(max_digits=19, decimal_places=7, null=True, blank=True)
    decision_note = models.TextField(blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # At most one dispute in progress per order.
            models.UniqueConstraint(
                fields=["order"],
                condition=~Q(status="RESOLVED"),
                name="escrow_dispute_one_open_per_order",
            )
        ]
        indexes = [
            models.Index(fields=["marketplace", "-id"]),
            models.Index(fields=["status", "created_at"]),
        ]
        permissions = [
            ("assign_dispute", "Can assign disputes to staff"),
            ("resolve_dispute", "Can decide disputes (moves the escrowed money)"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status}"

    @transition(field=status, source=S.OPEN, target=S.UNDER_REVIEW)
    def assign(self, to: str) -> None:
        self.assigned_to = to[:200]
        self.reviewed_at = timezone.now()
        self.assigned_at = self.reviewed_at

    @transition(field=status, source=S.UNDER_REVIEW, target=S.RESOLVED)
    def resolve(self) -> None:
        self.resolved_at = timezone.now()


class DisputeNote(models.Model):
    """A staff note on a dispute: what was checked, who was contacted. Append-only."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"note {self.pk} on {self.dispute_id}"


class ChainStep(models.Model):
    """One Trustless Work write for an escrow, recorded before it is attempted.

    Steps of an escrow run one at a time in id order. `signed_xdr` is the envelope as
    signed, stored before its first submission; until it is known to be landed or dead,
    only that envelope is ever sent again.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed"
        CANCELED = "CANCELED", "Canceled"

    class Action(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        FUND = "fund", "Fund"
        COMPLETE = "complete", "Mark a milestone completed"
        APPROVE = "approve", "Approve a milestone"
        RELEASE = "release", "Release"
        DISPUTE = "dispute", "Dispute"
        RESOLVE = "resolve", "Resolve a dispute"

    escrow = models.ForeignKey(Escrow, on_delete=models.PROTECT, related_name="steps")
    key = models.CharField(max_length=40)  # "fund", "approve:0", "resolve:1", ...
    action = models.CharField(max_length=10, choices=Action.choices)
    milestone_index = models.PositiveSmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # What the step needs beyond the escrow: signer party, distributions, evidence, ...
    payload = models.JSONField(default=dict, blank=True)
    signed_xdr = models.TextField(blank=True)
    tx_hash = models.CharField(max_length=64, blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["escrow", "key"], name="escrow_chainstep_key_unique")
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.escrow_id}:{self.key} {self.status}"


def order_snapshot(order: Order) -> dict[str, Any]:
    """The fields an audit row keeps of an order."""
    return {
        "id": order.public_id,
        "status": order.status,
        "amount": order.money.text(),
        "currency": order.currency,
        "outcome": order.outcome,
    }
