"""The audit log writer: the only code that adds AuditLog rows.

Call it inside the transaction of the change, so an audit row exists exactly when the
change does. The actor, request id and IP come from orchestrator.context.
"""

from typing import Any

from django.db import transaction

from orchestrator.context import current_actor
from orchestrator.models import AuditLog
from orchestrator.redaction import redact


def audit_record(
    *,
    action: str,
    object_type: str,
    object_id: str,
    marketplace_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditLog:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record() must run inside the transaction of the change.")
    actor = current_actor()
    return AuditLog.objects.create(
        marketplace_id=marketplace_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        request_id=actor.request_id[:100],
        ip=actor.ip or None,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=redact(before) if before is not None else None,
        after=redact(after) if after is not None else None,
        reason=reason,
    )
