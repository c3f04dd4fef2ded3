"""The ledger's error contract. Codes are public and never renamed."""

from orchestrator.errors import ConflictError, DomainError, UnprocessableError


class InvalidAmountError(DomainError):
    code = "INVALID_AMOUNT_FORMAT"


class InvalidCurrencyError(DomainError):
    code = "INVALID_CURRENCY"


class CurrencyMismatchError(UnprocessableError):
    code = "CURRENCY_MISMATCH"


class InsufficientFundsError(UnprocessableError):
    """A bounded account would drop below zero. Details: available, requested, currency."""

    code = "INSUFFICIENT_FUNDS"


class UnbalancedEntryError(DomainError):
    """Postings that do not sum to zero per currency: a programming error in the caller."""

    code = "UNBALANCED_ENTRY"


class ReferenceReusedError(ConflictError):
    """The business reference names an earlier entry or hold with different content."""

    code = "REFERENCE_REUSED"


class HoldNotActiveError(ConflictError):
    """The hold was captured, voided or expired already; it resolves at most once."""

    code = "HOLD_ALREADY_RESOLVED"


class HoldAmountError(UnprocessableError):
    code = "HOLD_AMOUNT_EXCEEDED"


class SelfApprovalError(UnprocessableError):
    """Staff tried to approve an adjustment they requested: a second person must approve it."""

    code = "SELF_APPROVAL_FORBIDDEN"
