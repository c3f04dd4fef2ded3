"""Platform reads, always scoped by the caller's marketplace."""

from datetime import datetime

from django.db.models import QuerySet

from orchestrator.errors import NotFoundError
from orchestrator.models import Marketplace, MarketplaceUser


class UserNotFoundError(NotFoundError):
    code = "USER_NOT_FOUND"


def user_get(*, marketplace: Marketplace, user_id: str) -> MarketplaceUser:
    """Raises UserNotFoundError for unknown ids and for other marketplaces' users alike."""
    user = MarketplaceUser.objects.filter(marketplace=marketplace, public_id=user_id).first()
    if user is None:
        raise UserNotFoundError("User not found.", user_id=user_id)
    return user


def user_list(
    *,
    marketplace: Marketplace,
    type: str | None = None,
    external_user_id: str | None = None,
    email: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[MarketplaceUser]:
    users = MarketplaceUser.objects.filter(marketplace=marketplace)
    if type:
        users = users.filter(type=type)
    if external_user_id:
        users = users.filter(external_user_id=external_user_id)
    if email:
        users = users.filter(email__iexact=email)
    if created_after:
        users = users.filter(created_at__gte=created_after)
    if created_before:
        users = users.filter(created_at__lt=created_before)
    return users
