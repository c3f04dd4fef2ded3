"""Platform reads, always scoped by the caller's marketplace."""

from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import TypeVar

from django.db.models import Model, QuerySet

from orchestrator.errors import NotFoundError
from orchestrator.models import Marketplace, MarketplaceUser

M = TypeVar("M", bound=Model)


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
    return filtered(
        MarketplaceUser.objects.filter(marketplace=marketplace),
        type=type,
        external_user_id=external_user_id,
        email__iexact=email,
        created_at__gte=created_after,
        created_at__lt=created_before,
    )


def filtered(queryset: QuerySet[M], **lookups: object) -> QuerySet[M]:
    """`queryset` filtered by each lookup whose value was given (not None, not empty)."""
    return queryset.filter(
        **{key: value for key, value in lookups.items() if value not in (None, "")}
    )


def batched(queryset: QuerySet[M], size: int = 500) -> Iterator[list[M]]:
    """The rows of `queryset` in lists of at most `size`, read `size` at a time."""
    rows = queryset.iterator(chunk_size=size)
    while batch := list(islice(rows, size)):
        yield batch
