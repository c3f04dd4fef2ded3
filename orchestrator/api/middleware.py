"""Request-level middleware: request ids in and out, timing and the access log, and the
body size cap."""

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from orchestrator.api.errors import json_error
from orchestrator.context import SYSTEM, acting_as, set_request_id
from orchestrator.metrics import http_request_observe

logger = logging.getLogger("orchestrator.api")
access_logger = logging.getLogger("orchestrator.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")


class RequestIdMiddleware:
    """Reuse a sane incoming X-Request-ID or make one; echo it on the response.

    The actor that authentication sets acts for this request only: code that runs later in
    the same thread must not be audited as it. (The request id stays set after the response,
    so Django's own log line for the request still carries it.)
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        request.request_id = request_id  # type: ignore[attr-defined]
        set_request_id(request_id)
        with acting_as(SYSTEM):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class RequestMetricsMiddleware:
    """Time each request into the latency histogram and write its access log line.

    The route is the URL pattern (`/api/v1/orders/<str:order_id>`), never the path: ids
    would make one time series per object. Requests no pattern matched count as
    "<unmatched>". The line goes to the `orchestrator.access` logger at INFO (with the
    request id, as every line); the path is logged, the query string and headers never.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        match = request.resolver_match
        route = f"/{match.route}" if match is not None and match.route else "<unmatched>"
        method = request.method or ""
        http_request_observe(
            route=route, method=method, status=response.status_code, seconds=seconds
        )
        access_logger.info(
            "%s %s %s %.1fms",
            method,
            request.path,
            response.status_code,
            seconds * 1000,
            extra={
                "method": method,
                "path": request.path,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
        return response


class BodySizeLimitMiddleware:
    """Refuse API bodies over API_MAX_BODY_BYTES with 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit: int = settings.API_MAX_BODY_BYTES
        if request.path.startswith("/api/"):
            try:
                length = int(request.headers.get("Content-Length") or 0)
            except ValueError:
                return json_error(400, "INVALID_REQUEST", "Content-Length is not a number.")
            if length > limit:
                return json_error(
                    413, "PAYLOAD_TOO_LARGE", "Request body is too large.", max_bytes=limit
                )
        return self.get_response(request)


class ApiErrorEnvelopeMiddleware:
    """Under /api/, errors that never reached a DRF view still get the JSON error body.

    Unknown routes (404) and crashes (500) would otherwise get Django's HTML pages, and the
    DEBUG pages would leak internals.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return json_error(404, "NOT_FOUND", "No such resource.", path=request.path)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return json_error(500, "INTERNAL_ERROR", "Internal error. It has been logged.")
