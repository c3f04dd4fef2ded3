"""One error family for every provider client.

The API answers them with their own code and status (orchestrator.api.errors): 502
PROVIDER_ERROR, 504 PROVIDER_TIMEOUT, 502 PROVIDER_RATE_LIMITED, 503 PROVIDER_UNAVAILABLE.
`retryable` says whether the same call may succeed later; `outcome_unknown` says the
provider may have applied the call although we saw no answer (a timeout after sending, a
dropped connection, a 5xx): such a create must be looked up by its code before retrying.
"""

from typing import Any

from orchestrator.errors import UpstreamError, UpstreamTimeoutError


class ProviderError(UpstreamError):
    """A provider answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        /,
        *,
        provider: str,
        retryable: bool,
        outcome_unknown: bool = False,
        http_status: int | None = None,
        reason_code: str = "",
        **details: Any,
    ) -> None:
        super().__init__(
            message,
            retryable=retryable,
            provider=provider,
            provider_status=http_status,
            reason_code=reason_code or None,
            **details,
        )
        self.provider = provider
        self.outcome_unknown = outcome_unknown
        self.upstream_status = http_status
        self.reason_code = reason_code


class ProviderRejectedError(ProviderError):
    """A definitive 4xx refusal (validation, business rule): repeating it will not help."""

    def __init__(self, message: str, /, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(message, **kwargs)


class ProviderNotFoundError(ProviderRejectedError):
    """The provider has no such object (404 or a not-found reason code)."""


class ProviderUnavailableError(ProviderError):
    """5xx or the connection failed: transient; a create may or may not have happened."""

    code = "PROVIDER_UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, /, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        kwargs.setdefault("outcome_unknown", True)
        super().__init__(message, **kwargs)


class ProviderRateLimitedError(ProviderError):
    """The provider (or our client-side limit of its quota) refused for now."""

    code = "PROVIDER_RATE_LIMITED"

    def __init__(self, message: str, /, *, retry_after: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(max(1, round(retry_after)))}


class ProviderTimeoutError(ProviderError, UpstreamTimeoutError):
    """No answer in time. The provider may have applied the call (outcome unknown)."""

    code = "PROVIDER_TIMEOUT"
    http_status = 504

    def __init__(self, message: str, /, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        kwargs.setdefault("outcome_unknown", True)
        super().__init__(message, **kwargs)
