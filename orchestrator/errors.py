"""Error categories shared by every app.

Domain code raises subclasses of these; orchestrator.api.errors turns them into the
one error body of the API, {"error": {"code", "message", "details"}}. The category owns
the HTTP status, the subclass owns the `code`, which is part of the public API and is
never renamed. This module imports nothing from the project.
"""

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "BAD_REQUEST"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailedError(DomainError):
    """Input that is well-formed JSON but not acceptable, found below the serializer."""

    code = "VALIDATION_ERROR"


class NotFoundError(DomainError):
    """Does not exist for this caller (other marketplaces' rows included)."""

    code = "NOT_FOUND"
    http_status = 404


class ConflictError(DomainError):
    """The resource's current state does not allow this; it may later."""

    code = "CONFLICT"
    http_status = 409


class InvalidStateError(ConflictError):
    code = "INVALID_STATE"


class UnprocessableError(DomainError):
    """Well-formed, but breaks a business rule."""

    code = "UNPROCESSABLE"
    http_status = 422


class UpstreamError(DomainError):
    """A provider failed; `retryable` says whether trying again may help."""

    code = "PROVIDER_ERROR"
    http_status = 502

    def __init__(self, message: str, /, *, retryable: bool, **details: Any) -> None:
        super().__init__(message, **details)
        self.retryable = retryable


class UpstreamTimeoutError(UpstreamError):
    code = "PROVIDER_TIMEOUT"
    http_status = 504
