"""Reads of top-ups and withdrawals, always scoped by the caller's marketplace."""

from datetime import datetime

from django.db.models import QuerySet

from orchestrator.models import Marketplace
from orchestrator.selectors import filtered
from providers.errors import TopUpNotFoundError, WithdrawalNotFoundError
from providers.models import TopUp, Withdrawal


def topup_get(*, marketplace: Marketplace, topup_id: str) -> TopUp:
    topup = (
        TopUp.objects.select_related("user")
        .filter(marketplace=marketplace, public_id=topup_id)
        .first()
    )
    if topup is None:
        raise TopUpNotFoundError("Top-up not found.", topup_id=topup_id)
    return topup


def topup_list(
    *,
    marketplace: Marketplace,
    user_id: str | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[TopUp]:
    return filtered(
        TopUp.objects.select_related("user").filter(marketplace=marketplace),
        user__public_id=user_id,
        status=status,
        created_at__gte=created_after,
        created_at__lt=created_before,
    )


def withdrawal_get(*, marketplace: Marketplace, withdrawal_id: str) -> Withdrawal:
    withdrawal = (
        Withdrawal.objects.select_related("user")
        .filter(marketplace=marketplace, public_id=withdrawal_id)
        .first()
    )
    if withdrawal is None:
        raise WithdrawalNotFoundError("Withdrawal not found.", withdrawal_id=withdrawal_id)
    return withdrawal


def withdrawal_list(
    *,
    marketplace: Marketplace,
    user_id: str | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Withdrawal]:
    return filtered(
        Withdrawal.objects.select_related("user").filter(marketplace=marketplace),
        user__public_id=user_id,
        status=status,
        created_at__gte=created_after,
        created_at__lt=created_before,
    )
