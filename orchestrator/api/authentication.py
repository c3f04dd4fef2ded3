"""Bearer API-key authentication. Runs before anything reads the request body."""

import re
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from orchestrator.context import Actor, set_actor
from orchestrator.models import ApiKey

_KEY_FORMAT = re.compile(r"ohk_(?:live|test)_(key_[A-Za-z0-9]{1,36})_[A-Za-z0-9]{1,128}")

# last_used_at is a hint for humans; writing it on every request would cost a row update each.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyFailed(exceptions.AuthenticationFailed):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.error_code = code


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, ApiKey]:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiKeyFailed("Missing Authorization header.", "UNAUTHORIZED")
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise ApiKeyFailed("Authorization must be 'Bearer <api key>'.", "UNAUTHORIZED")
        key = self._lookup(raw_key.strip())
        now = timezone.now()
        if key.revoked_at is not None:
            raise ApiKeyFailed("This API key has been revoked.", "API_KEY_REVOKED")
        if key.expires_at is not None and key.expires_at <= now:
            raise ApiKeyFailed("This API key has expired.", "API_KEY_EXPIRED")
        if not key.marketplace.is_active:
            raise ApiKeyFailed("This marketplace is disabled.", "UNAUTHORIZED")
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        set_actor(
            Actor(
                kind="api_key",
                id=key.public_id,
                request_id=getattr(request._request, "request_id", ""),
                ip=request.META.get("REMOTE_ADDR", ""),
            )
        )
        return None, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @staticmethod
    def _lookup(raw_key: str) -> ApiKey:
        # ohk_<env>_key_<random>_<secret>: the public id locates the row, the digest proves it.
        # Anything else (NUL bytes included, which PostgreSQL refuses) is refused unread.
        match = _KEY_FORMAT.fullmatch(raw_key)
        if match is None:
            raise ApiKeyFailed("Malformed API key.", "INVALID_API_KEY")
        public_id = match.group(1)
        key = ApiKey.objects.select_related("marketplace").filter(public_id=public_id).first()
        if key is None or not key.matches(raw_key):
            raise ApiKeyFailed("Invalid API key.", "INVALID_API_KEY")
        return key


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents ApiKeyAuthentication in the OpenAPI schema as an HTTP bearer scheme."""

    target_class = "orchestrator.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme: dict[str, Any] = build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Bearer",  # noqa: S106 - the scheme's name, not a secret
            bearer_format="ohk_<env>_key_...",
        )
        return scheme
