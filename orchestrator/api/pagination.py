"""Cursor pagination: {"data": [...], "pagination": {"has_more", "next_cursor"}}.

Newest first, ordered by the primary key. The cursor is an opaque signed token naming
the last row of the previous page, so it cannot be forged to walk another order.
"""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.core import signing
from django.db.models import Model, QuerySet
from rest_framework.request import Request

from orchestrator.errors import ValidationFailedError

M = TypeVar("M", bound=Model)
_SALT = "orchestrator.cursor"


def encode_cursor(pk: int) -> str:
    return signing.dumps(pk, salt=_SALT, compress=False)


def decode_cursor(cursor: str) -> int:
    try:
        value = signing.loads(cursor, salt=_SALT)
    except signing.BadSignature as exc:
        raise ValidationFailedError(
            "Invalid cursor.", fields={"cursor": ["Invalid cursor."]}
        ) from exc
    if not isinstance(value, int):
        raise ValidationFailedError("Invalid cursor.", fields={"cursor": ["Invalid cursor."]})
    return value


def page_limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return int(settings.PAGINATION_DEFAULT_LIMIT)
    maximum = int(settings.PAGINATION_MAX_LIMIT)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= maximum:
        message = f"limit must be a whole number from 1 to {maximum}."
        raise ValidationFailedError(message, fields={"limit": [message]})
    return int(raw)


def paginate(
    queryset: QuerySet[M], request: Request, render: Callable[[Sequence[M]], list[Any]]
) -> dict[str, Any]:
    limit = page_limit(request)
    cursor = request.query_params.get("cursor")
    if cursor:
        queryset = queryset.filter(pk__lt=decode_cursor(cursor))
    rows = list(queryset.order_by("-pk")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": render(rows),
        "pagination": {
            "has_more": has_more,
            "next_cursor": encode_cursor(rows[-1].pk) if has_more else None,
        },
    }
