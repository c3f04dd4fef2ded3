"""The base of every public endpoint.

Order of work for each request: request id (middleware) -> body size (middleware) ->
API-key authentication (401) -> scope (403) -> rate limit (429) -> idempotency
(replay / 409) -> the view. Nothing reads the body before authentication has passed.
"""

from typing import Any, ClassVar

from django.http import HttpResponseBase
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated, NotFound, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.api.authentication import ApiKeyAuthentication
from orchestrator.api.idempotency import (
    HEADER,
    idempotency_abandon,
    idempotency_begin,
    idempotency_finish,
)
from orchestrator.api.permissions import HasRequiredScope
from orchestrator.api.ratelimit import rate_limit_hit
from orchestrator.models import ApiKey, IdempotencyRecord, Marketplace


class AnyContentJSONParser(JSONParser):
    """Bodies are JSON whatever Content-Type says; anything else is 400 INVALID_JSON."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:  # a 1 MiB body can nest far deeper than the stack allows
            raise ParseError("JSON parse error - nested too deeply.") from exc


class _Replay(Exception):  # noqa: N818 - control flow, never reaches a client as an error
    def __init__(self, response: HttpResponseBase) -> None:
        self.response = response


class ApiView(APIView):
    """API-key auth, one declared scope, per-key rate limit and Idempotency-Key support."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasRequiredScope]
    parser_classes = [AnyContentJSONParser]
    required_scope: ClassVar[str]
    # Where GET and POST on one path need different scopes: {"GET": "read", "POST": "write"}.
    method_scopes: ClassVar[dict[str, str]] = {}
    # Top-level response fields holding secrets shown once (a new API key): an Idempotency-Key
    # replay answers them redacted, and they are never written to the idempotency record.
    secret_response_fields: ClassVar[tuple[str, ...]] = ()

    def scope_for(self, method: str | None) -> str | None:
        if method in ("HEAD", "OPTIONS"):  # they only describe what GET would answer
            method = "GET"
        return self.method_scopes.get(method or "") or getattr(self, "required_scope", None)

    def api_key(self, request: Request) -> ApiKey:
        if not isinstance(request.auth, ApiKey):
            raise NotAuthenticated()
        return request.auth

    def marketplace(self, request: Request) -> Marketplace:
        return self.api_key(request).marketplace

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, scope
        key = self.api_key(request)
        request._rate_limit = rate_limit_hit(bucket=key.public_id)  # type: ignore[attr-defined]
        if any("\x00" in str(value) for value in kwargs.values()):
            raise NotFound()  # no id holds NUL, and PostgreSQL refuses it in a query parameter
        idem_key = request.headers.get(HEADER)
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and idem_key is not None:
            claimed = idempotency_begin(
                api_key=key,
                method=request.method,
                path=request.path,
                key=idem_key,
                body=request._request.body,
            )
            if not isinstance(claimed, IdempotencyRecord):
                raise _Replay(claimed)
            request._idempotency = claimed  # type: ignore[attr-defined]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Replay):
            return exc.response  # type: ignore[return-value]
        try:
            return super().handle_exception(exc)
        except Exception:
            record = getattr(self.request, "_idempotency", None)
            if record is not None:
                idempotency_abandon(record=record)
            raise

    def finalize_response(  # type: ignore[override]  # replays are plain HttpResponses
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        state = getattr(request, "_rate_limit", None)
        if state is not None:
            for header, value in state.headers().items():
                response[header] = value
        record = getattr(request, "_idempotency", None)
        if record is not None and isinstance(response, Response):
            response.render()
            idempotency_finish(
                record=record, response=response, secret_fields=self.secret_response_fields
            )
        return response


class PublicView(APIView):
    """An unauthenticated endpoint (health checks)."""

    authentication_classes: ClassVar[list[Any]] = []  # type: ignore[misc]
    permission_classes: ClassVar[list[Any]] = []  # type: ignore[misc]


class StrictSerializer(serializers.Serializer[Any]):
    """Input serializer that refuses unknown fields, non-object bodies and, for string fields,
    JSON values that are not strings (DRF would silently turn 12 or 1e20 into text)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        errors: dict[str, Any] = {name: ["Unknown field."] for name in set(data) - set(self.fields)}
        errors.update(
            {
                name: ["Not a valid string."]
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and data.get(name) is not None
                and not isinstance(data[name], str)
            }
        )
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**(exc.detail if isinstance(exc.detail, dict) else {}), **errors}
            raise serializers.ValidationError(errors or exc.detail) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value


def validated(serializer_class: type[StrictSerializer], data: Any) -> dict[str, Any]:
    """Validate `data` (raises 400 VALIDATION_ERROR naming the fields) and return it."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
