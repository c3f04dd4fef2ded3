"""Platform writes: marketplaces, API keys, users. Each is one transaction, audited."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrator.audit import audit_record
from orchestrator.errors import ConflictError, ValidationFailedError
from orchestrator.events import DomainEvent, publish
from orchestrator.models import ApiKey, Marketplace, MarketplaceUser, Scope


@dataclass(frozen=True, kw_only=True)
class UserCreated(DomainEvent):
    type = "user.created"
    aggregate_type = "user"


def _user_snapshot(user: MarketplaceUser) -> dict[str, Any]:
    return {
        "id": user.public_id,
        "external_user_id": user.external_user_id,
        "email": user.email,
        "type": user.type,
        "status": user.status,
    }


@transaction.atomic
def marketplace_create(*, name: str, slug: str, platform_fee_bps: int = 0) -> Marketplace:
    if Marketplace.objects.filter(slug=slug).exists():
        raise ConflictError(f"A marketplace with slug {slug!r} exists.", slug=slug)
    marketplace = Marketplace.objects.create(
        name=name, slug=slug, platform_fee_bps=platform_fee_bps
    )
    audit_record(
        action="marketplace.created",
        object_type="marketplace",
        object_id=marketplace.public_id,
        marketplace_id=marketplace.pk,
        after={"name": name, "slug": slug, "platform_fee_bps": platform_fee_bps},
    )
    return marketplace


def _marketplace_snapshot(marketplace: Marketplace) -> dict[str, Any]:
    return {
        "name": marketplace.name,
        "platform_fee_bps": marketplace.platform_fee_bps,
        "is_active": marketplace.is_active,
    }


@transaction.atomic
def marketplace_update(
    *,
    marketplace: Marketplace,
    name: str | None = None,
    platform_fee_bps: int | None = None,
    is_active: bool | None = None,
) -> Marketplace:
    """Change what is given (orders made from now on take the new fee; existing escrows
    keep theirs). Audited when something changed."""
    marketplace = Marketplace.objects.select_for_update().get(pk=marketplace.pk)
    before = _marketplace_snapshot(marketplace)
    if name is not None:
        marketplace.name = name
    if platform_fee_bps is not None:
        marketplace.platform_fee_bps = platform_fee_bps
    if is_active is not None:
        marketplace.is_active = is_active
    after = _marketplace_snapshot(marketplace)
    if after != before:
        marketplace.save(update_fields=list(after))
        audit_record(
            action="marketplace.updated",
            object_type="marketplace",
            object_id=marketplace.public_id,
            marketplace_id=marketplace.pk,
            before=before,
            after=after,
        )
    return marketplace


@transaction.atomic
def api_key_create(
    *,
    marketplace: Marketplace,
    name: str,
    scopes: list[str],
    environment: str,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned here once and never stored.

    Raises:
        ValidationFailedError: an unknown scope or environment, or no scope at all.
    """
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown or not scopes:
        raise ValidationFailedError(
            f"Scopes must be some of {', '.join(Scope.values)}.", fields={"scopes": unknown}
        )
    if environment not in ("live", "test"):
        raise ValidationFailedError("environment must be 'live' or 'test'.")
    key, raw = ApiKey.build(
        marketplace=marketplace,
        name=name,
        scopes=scopes,
        environment=environment,
        expires_at=expires_at,
    )
    key.save()
    audit_record(
        action="api_key.created",
        object_type="api_key",
        object_id=key.public_id,
        marketplace_id=marketplace.pk,
        after={"name": name, "scopes": key.scopes, "environment": environment},
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: ApiKey, reason: str = "") -> ApiKey:
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            action="api_key.revoked",
            object_type="api_key",
            object_id=key.public_id,
            marketplace_id=key.marketplace_id,
            reason=reason,
        )
    return key


def user_create(
    *, marketplace: Marketplace, external_user_id: str, email: str = "", type: str
) -> tuple[MarketplaceUser, bool]:
    """Register a user, or return the one this marketplace already has with that external id.

    Returns the user and whether it was created now. Safe under concurrent duplicates.
    """
    existing = MarketplaceUser.objects.filter(
        marketplace=marketplace, external_user_id=external_user_id
    ).first()
    if existing is not None:
        return existing, False
    try:
        return _user_insert(
            marketplace=marketplace, external_user_id=external_user_id, email=email, type=type
        ), True
    except IntegrityError:  # a concurrent request created it first
        return MarketplaceUser.objects.get(
            marketplace=marketplace, external_user_id=external_user_id
        ), False


@transaction.atomic
def _user_insert(
    *, marketplace: Marketplace, external_user_id: str, email: str, type: str
) -> MarketplaceUser:
    user = MarketplaceUser.objects.create(
        marketplace=marketplace, external_user_id=external_user_id, email=email, type=type
    )
    snapshot = _user_snapshot(user)
    audit_record(
        action="user.created",
        object_type="user",
        object_id=user.public_id,
        marketplace_id=marketplace.pk,
        after=snapshot,
    )
    publish(
        UserCreated(
            marketplace_id=marketplace.pk, aggregate_id=user.public_id, user_ids=(user.public_id,)
        )
    )
    return user
