"""Applying a verified Airtm webhook: find our object, re-read it from Airtm, apply that.

The webhook body is only a pointer. It may be stale, duplicated or out of order, so the
object is read again from Airtm and applied forward-only, like a refresh.
"""

from typing import Any, TypeVar

from providers.models import TopUp, Withdrawal
from providers.services.topups import topup_sync
from providers.services.withdrawals import withdrawal_sync

M = TypeVar("M", TopUp, Withdrawal)


def airtm_event_apply(*, event_type: str, data: dict[str, Any]) -> str:
    """Apply one Airtm event; returns what happened, for the inbound webhook record.

    Raises:
        ProviderError: Airtm could not be read (the caller retries later).
    """
    object_id, code = str(data.get("id") or ""), str(data.get("code") or "")
    if event_type.startswith("payin."):
        topup = _find(TopUp, "airtm_payin_id", object_id, code)
        if topup is None:
            return "ignored: no top-up has this payin"
        before = topup.status
        topup = topup_sync(topup_id=topup.pk)
        return f"{topup.public_id}: {before} -> {topup.status}"
    if event_type.startswith("payout."):
        withdrawal = _find(Withdrawal, "airtm_payout_id", object_id, code)
        if withdrawal is None:
            return "ignored: no withdrawal has this payout"
        before = withdrawal.status
        withdrawal = withdrawal_sync(withdrawal_id=withdrawal.pk)
        return f"{withdrawal.public_id}: {before} -> {withdrawal.status}"
    return f"ignored: event type {event_type!r}"


def _find(model: type[M], id_field: str, object_id: str, code: str) -> M | None:
    """Ours by the provider's id, or by our code (set before the provider's id is known)."""
    if object_id:
        found = model.objects.filter(**{id_field: object_id}).first()
        if found is not None:
            return found
    return model.objects.filter(public_id=code).first() if code else None
