"""Domain events of top-ups, withdrawals and Airtm links (written to the outbox by publish)."""

from dataclasses import dataclass
from typing import ClassVar

from ledger.money import Money
from orchestrator.events import DomainEvent
from providers.models import TopUp, Withdrawal


@dataclass(frozen=True, kw_only=True)
class _MoneyFlowEvent(DomainEvent):
    user_id: str
    amount: Money
    status: str
    previous_status: str = ""
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class TopUpEvent(_MoneyFlowEvent):
    aggregate_type: ClassVar[str] = "topup"

    confirmation_uri: str = ""


@dataclass(frozen=True, kw_only=True)
class TopUpCreated(TopUpEvent):
    type = "topup.created"


@dataclass(frozen=True, kw_only=True)
class TopUpConfirmationRequired(TopUpEvent):
    type = "topup.confirmation_required"


@dataclass(frozen=True, kw_only=True)
class TopUpProcessing(TopUpEvent):
    type = "topup.processing"


@dataclass(frozen=True, kw_only=True)
class TopUpSucceeded(TopUpEvent):
    type = "topup.succeeded"

    credited: Money


@dataclass(frozen=True, kw_only=True)
class TopUpFailed(TopUpEvent):
    type = "topup.failed"


@dataclass(frozen=True, kw_only=True)
class TopUpCanceled(TopUpEvent):
    type = "topup.canceled"

    canceled_by: str = ""


@dataclass(frozen=True, kw_only=True)
class WithdrawalEvent(_MoneyFlowEvent):
    aggregate_type: ClassVar[str] = "withdrawal"


@dataclass(frozen=True, kw_only=True)
class WithdrawalCreated(WithdrawalEvent):
    type = "withdrawal.created"


@dataclass(frozen=True, kw_only=True)
class WithdrawalCommitted(WithdrawalEvent):
    type = "withdrawal.committed"


@dataclass(frozen=True, kw_only=True)
class WithdrawalPending(WithdrawalEvent):
    type = "withdrawal.pending"


@dataclass(frozen=True, kw_only=True)
class WithdrawalPendingUserAction(WithdrawalEvent):
    type = "withdrawal.pending_user_action"


@dataclass(frozen=True, kw_only=True)
class WithdrawalCompleted(WithdrawalEvent):
    type = "withdrawal.completed"


@dataclass(frozen=True, kw_only=True)
class WithdrawalFailed(WithdrawalEvent):
    type = "withdrawal.failed"

    reason_code: str = ""


@dataclass(frozen=True, kw_only=True)
class WithdrawalCanceled(WithdrawalEvent):
    type = "withdrawal.canceled"

    canceled_by: str = ""


@dataclass(frozen=True, kw_only=True)
class AirtmLinked(DomainEvent):
    type = "user.airtm_linked"
    aggregate_type = "user"

    email: str
    airtm_user_id: str
    is_verified: bool


TOPUP_EVENTS: dict[str, type[TopUpEvent]] = {
    TopUp.Status.CREATED: TopUpCreated,
    TopUp.Status.AWAITING_USER_CONFIRMATION: TopUpConfirmationRequired,
    TopUp.Status.PROCESSING: TopUpProcessing,
    TopUp.Status.FAILED: TopUpFailed,
    TopUp.Status.CANCELED: TopUpCanceled,
}

WITHDRAWAL_EVENTS: dict[str, type[WithdrawalEvent]] = {
    Withdrawal.Status.CREATED: WithdrawalCreated,
    Withdrawal.Status.COMMITTED: WithdrawalCommitted,
    Withdrawal.Status.PENDING: WithdrawalPending,
    Withdrawal.Status.PENDING_USER_ACTION: WithdrawalPendingUserAction,
    Withdrawal.Status.COMPLETED: WithdrawalCompleted,
    Withdrawal.Status.FAILED: WithdrawalFailed,
    Withdrawal.Status.CANCELED: WithdrawalCanceled,
}
