"""Linking a marketplace user to the Airtm account their withdrawals are paid to."""

from django.db import transaction
from django.utils import timezone

from orchestrator.audit import audit_record
from orchestrator.events import publish
from orchestrator.models import MarketplaceUser
from providers.errors import AirtmUserInvalidError
from providers.events import AirtmLinked
from providers.models import AirtmLink
from providers.services.common import airtm_client


def airtm_link(*, user: MarketplaceUser, email: str) -> AirtmLink:
    """Look the account up at Airtm and link it (re-linking replaces the previous one).

    Raises:
        AirtmUserInvalidError: Airtm has no such account, or it is not active.
        ProviderError: Airtm could not be asked; nothing changed.
    """
    account = airtm_client().get_user(email)
    if account is None:
        raise AirtmUserInvalidError(
            "Airtm has no account with this email.", email=email, failure_reason="USER_NOT_FOUND"
        )
    if account.status.lower() != "active":
        raise AirtmUserInvalidError(
            "This Airtm account is not active.", email=email, failure_reason="USER_INACTIVE"
        )
    with transaction.atomic():
        link = AirtmLink.objects.select_for_update().filter(user=user).first()
        before = (
            None if link is None else {"email": link.email, "airtm_user_id": link.airtm_user_id}
        )
        now = timezone.now()
        link = link or AirtmLink(user=user, marketplace_id=user.marketplace_id, linked_at=now)
        link.email = email
        link.airtm_user_id = account.id
        link.airtm_status = account.status.lower()
        link.is_verified = account.is_verified
        link.country = account.country[:3]
        link.checked_at = now
        if before is None or before["airtm_user_id"] != account.id:
            link.linked_at = now
        link.save()
        audit_record(
            action="user.airtm_linked",
            object_type="user",
            object_id=user.public_id,
            marketplace_id=user.marketplace_id,
            before=before,
            after={"email": email, "airtm_user_id": account.id, "verified": account.is_verified},
        )
        publish(
            AirtmLinked(
                marketplace_id=user.marketplace_id,
                aggregate_id=user.public_id,
                user_ids=(user.public_id,),
                email=email,
                airtm_user_id=account.id,
                is_verified=account.is_verified,
            )
        )
    return link
