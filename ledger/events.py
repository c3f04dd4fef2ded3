"""Domain events of the ledger's back-office flows (entries' own events: ledger.services)."""

from dataclasses import dataclass

from ledger.money import Money
from orchestrator.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class AdjustmentPosted(DomainEvent):
    """Staff corrected a user's available balance by hand (a `credit` or a `debit`), with a
    reason; above the approval threshold, once a second staff member approved it. The balance
    change itself is also announced by `balance.updated`."""

    type = "adjustment.posted"
    aggregate_type = "adjustment"

    user_id: str
    direction: str
    amount: Money
    entry_id: str
    reference: str
