"""One error shape for the whole API: {"error": {"code", "message", "details"}}.

Domain errors carry their own code and status. DRF's exceptions are mapped to the codes
of the public catalogue; their headers (Retry-After, WWW-Authenticate) are kept.
Anything else is a bug: logged, answered 500 with no details.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from orchestrator.errors import DomainError

logger = logging.getLogger(__name__)

_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "INVALID_JSON",
    exceptions.UnsupportedMediaType: "INVALID_JSON",
    exceptions.AuthenticationFailed: "UNAUTHORIZED",
    exceptions.NotAuthenticated: "UNAUTHORIZED",
    exceptions.PermissionDenied: "INSUFFICIENT_SCOPE",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.Throttled: "RATE_LIMITED",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
        for header, value in getattr(exc, "headers", {}).items():
            response[header] = value
        return response

    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    drf_response = drf_exception_handler(exc, context)
    if drf_response is None or not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django logs it and handler500 answers
    response = drf_response
    if isinstance(exc, exceptions.ValidationError):
        fields = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        response.data = error_body(
            "VALIDATION_ERROR",
            "Invalid request: " + ", ".join(sorted(fields)) + ".",
            {"fields": fields},
        )
        return response
    code = (
        getattr(exc, "error_code", None) or _CODES.get(type(exc)) or str(exc.default_code).upper()
    )
    response.data = error_body(code, _message(exc))
    return response


def _message(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict | list):
        return str(exc.default_detail)
    return str(detail)


def json_error(status: int, code: str, message: str, **details: Any) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(404, "NOT_FOUND", "No such resource.", path=request.path)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Http404())


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(500, "INTERNAL_ERROR", "Internal error. It has been logged.")
    from django.views.defaults import server_error

    return server_error(request)
