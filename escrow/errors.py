"""Error codes of the order, escrow, milestone and dispute API. Public; never renamed."""

from orchestrator.errors import ConflictError, DomainError, NotFoundError


class OrderNotFoundError(NotFoundError):
    code = "ORDER_NOT_FOUND"


class MilestoneNotFoundError(NotFoundError):
    code = "MILESTONE_NOT_FOUND"


class DisputeNotFoundError(NotFoundError):
    code = "DISPUTE_NOT_FOUND"


class ClientOrderRefExistsError(ConflictError):
    """Another order of the marketplace already carries this client_order_ref."""

    code = "CLIENT_ORDER_REF_EXISTS"


class InvalidAmountError(DomainError):
    """Amounts that do not add up (milestones, a split)."""

    code = "INVALID_AMOUNT"
