"""Error codes of the top-up, withdrawal and Airtm-link API. Public; never renamed."""

from orchestrator.errors import ConflictError, NotFoundError, UnprocessableError


class TopUpNotFoundError(NotFoundError):
    code = "TOPUP_NOT_FOUND"


class WithdrawalNotFoundError(NotFoundError):
    code = "WITHDRAWAL_NOT_FOUND"


class AirtmUserNotLinkedError(UnprocessableError):
    """Withdrawals are paid to the user's linked Airtm account; there is none."""

    code = "AIRTM_USER_NOT_LINKED"


class AirtmUserInvalidError(UnprocessableError):
    """Airtm does not know the account, or it cannot receive money."""

    code = "AIRTM_USER_INVALID"


class DestinationInvalidError(UnprocessableError):
    code = "WITHDRAWAL_DESTINATION_INVALID"


class ProviderBusyError(ConflictError):
    """Another request is talking to the provider about this object right now."""

    code = "PROVIDER_OPERATION_IN_PROGRESS"

    def __init__(self, message: str, /, **details: object) -> None:
        super().__init__(message, **details)
        self.headers = {"Retry-After": "2"}
