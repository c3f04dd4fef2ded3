"""The back-office dashboard (the admin's front page): volume, open disputes, stuck objects and
failing webhook endpoints, each shown only to staff allowed to read what it counts.

Reads only. It gathers from every app, which is why it lives in the composition root.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Count, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from escrow.models import Dispute, Escrow, Order
from ledger.models import ReconciliationCase
from ledger.money import Money
from providers.models import TopUp, Withdrawal
from webhooks.models import WebhookDelivery, WebhookEndpoint

WINDOWS = (
    ("24 h", timedelta(hours=24)),
    ("7 days", timedelta(days=7)),
    ("30 days", timedelta(days=30)),
)
FAILING_ENDPOINTS_SHOWN = 10

Staff = User | AnonymousUser


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    count: int


@dataclass(frozen=True)
class VolumeRow:
    label: str
    url: str
    cells: list[str]  # one per window: "3 · 120.00 USD"


@dataclass
class Dashboard:
    windows: list[str] = field(default_factory=lambda: [label for label, _ in WINDOWS])
    volume: list[VolumeRow] = field(default_factory=list)
    disputes: list[Link] | None = None
    oldest_open_dispute: datetime | None = None
    stuck: list[Link] | None = None
    failing_endpoints: list[dict[str, Any]] | None = None

    @property
    def empty(self) -> bool:
        return not self.volume and all(
            section is None for section in (self.disputes, self.stuck, self.failing_endpoints)
        )


def dashboard_for(*, user: Staff, now: datetime | None = None) -> Dashboard:
    """The sections `user` may see."""
    now = now or timezone.now()
    board = Dashboard()
    volumes = (
        ("escrow.view_order", "Orders created", Order.objects.all(), "created_at"),
        (
            "providers.view_topup",
            "Top-ups succeeded",
            TopUp.objects.filter(status=TopUp.Status.SUCCEEDED),
            "completed_at",
        ),
        (
            "providers.view_withdrawal",
            "Withdrawals completed",
            Withdrawal.objects.filter(status=Withdrawal.Status.COMPLETED),
            "completed_at",
        ),
    )
    for permission, label, rows, time_field in volumes:
        if user.has_perm(permission):
            url = _changelist(rows.model._meta.label_lower)
            board.volume.append(VolumeRow(label, url, _volume(rows, time_field, now)))
    if user.has_perm("escrow.view_dispute"):
        board.disputes, board.oldest_open_dispute = _disputes()
    if user.has_perm("ledger.view_reconciliationcase") or user.has_perm("escrow.view_escrow"):
        board.stuck = _stuck(user)
    if user.has_perm("webhooks.view_webhookendpoint"):
        board.failing_endpoints = _failing_endpoints()
    return board


def _changelist(model: str, **filters: str) -> str:
    url = reverse(f"admin:{model.replace('.', '_')}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _volume(rows: QuerySet[Any], time_field: str, now: datetime) -> list[str]:
    """Count and sum per currency in each window, in one query."""
    annotations: dict[str, Any] = {}
    for n, (_, delta) in enumerate(WINDOWS):
        since = Q(**{f"{time_field}__gte": now - delta})
        annotations[f"count_{n}"] = Count("id", filter=since)
        annotations[f"total_{n}"] = Sum("amount", filter=since)
    longest = now - max(delta for _, delta in WINDOWS)
    per_currency = list(
        rows.filter(**{f"{time_field}__gte": longest})
        .values("currency")
        .annotate(**annotations)
        .order_by("currency")
    )
    cells = []
    for n in range(len(WINDOWS)):
        parts = [
            f"{row[f'count_{n}']} · {_money(row[f'total_{n}'], row['currency'])}"
            for row in per_currency
            if row[f"count_{n}"]
        ]
        cells.append(", ".join(parts) or "0")
    return cells


def _money(amount: Decimal | None, currency: str) -> str:
    money = Money((amount or Decimal(0)).quantize(Money.zero(currency).unit), currency)
    return f"{money.text()} {currency}"


def _disputes() -> tuple[list[Link], datetime | None]:
    counts = Dispute.objects.exclude(status=Dispute.Status.RESOLVED).aggregate(
        open=Count("id", filter=Q(status=Dispute.Status.OPEN)),
        unassigned=Count("id", filter=Q(status=Dispute.Status.OPEN, assigned_to="")),
        review=Count("id", filter=Q(status=Dispute.Status.UNDER_REVIEW)),
    )
    oldest = (
        Dispute.objects.exclude(status=Dispute.Status.RESOLVED)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    model = "escrow.dispute"
    links = [
        Link("Open", _changelist(model, status__exact="OPEN"), counts["open"]),
        Link(
            "Open, unassigned",
            _changelist(model, status__exact="OPEN", assigned_to=""),
            counts["unassigned"],
        ),
        Link("Under review", _changelist(model, status__exact="UNDER_REVIEW"), counts["review"]),
    ]
    return links, oldest


def _stuck(user: Staff) -> list[Link]:
    links = []
    if user.has_perm("ledger.view_reconciliationcase"):
        open_cases = dict(
            ReconciliationCase.objects.filter(status=ReconciliationCase.Status.OPEN)
            .values("kind")
            .annotate(n=Count("id"))
            .values_list("kind", "n")
        )
        for kind in ReconciliationCase.Kind:
            url = _changelist("ledger.reconciliationcase", status__exact="OPEN", kind__exact=kind)
            links.append(Link(f"Open cases: {kind.label}", url, open_cases.get(kind, 0)))
    if user.has_perm("escrow.view_escrow"):
        count = Escrow.objects.filter(needs_attention=True).count()
        url = _changelist("escrow.escrow", needs_attention__exact="1")
        links.append(Link("Escrows needing attention", url, count))
    return links


def _failing_endpoints() -> list[dict[str, Any]]:
    endpoints = (
        WebhookEndpoint.objects.filter(deleted_at__isnull=True)
        .filter(Q(failing_since__isnull=False) | Q(is_enabled=False))
        .select_related("marketplace")
        .annotate(
            pending=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.PENDING))
        )
        .order_by("failing_since", "-disabled_at")[:FAILING_ENDPOINTS_SHOWN]
    )
    return [
        {
            "endpoint": endpoint,
            "url": _changelist("webhooks.webhookendpoint", q=endpoint.public_id),
        }
        for endpoint in endpoints
    ]
