"""API keys over the API: /api/v1/auth/me and /api/v1/auth/api-keys (admin scope)."""

from collections.abc import Sequence
from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, StrictSerializer, validated
from orchestrator.errors import NotFoundError
from orchestrator.models import ApiKey, Scope
from orchestrator.services import api_key_create, api_key_revoke


class ApiKeyNotFoundError(NotFoundError):
    code = "API_KEY_NOT_FOUND"


class ApiKeyCreateInput(StrictSerializer):
    name = serializers.CharField(max_length=200)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False
    )
    environment = serializers.ChoiceField(choices=["live", "test"], required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class ApiKeyOutput(serializers.Serializer[ApiKey]):
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    environment = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    hint = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.SerializerMethodField()

    def get_key(self, obj: ApiKey) -> str:
        return str(self.context["raw_key"])


def render_keys(keys: Sequence[ApiKey]) -> list[Any]:
    return list(ApiKeyOutput(cast(Any, keys), many=True).data)


class MeApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: ApiKeyOutput})
    def get(self, request: Request) -> Response:
        key = self.api_key(request)
        marketplace = key.marketplace
        return Response(
            {
                "api_key": ApiKeyOutput(key).data,
                "marketplace": {"id": marketplace.public_id, "name": marketplace.name},
            }
        )


class ApiKeyListCreateApi(ApiView):
    required_scope = Scope.ADMIN
    secret_response_fields = ("key",)

    @extend_schema(request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput})
    def post(self, request: Request) -> Response:
        """Create a key. The `key` field is in this answer only; it is never shown again."""
        data = validated(ApiKeyCreateInput, request.data)
        caller = self.api_key(request)
        key, raw = api_key_create(
            marketplace=caller.marketplace,
            name=data["name"],
            scopes=data["scopes"],
            environment=data.get("environment") or caller.environment,
            expires_at=data["expires_at"],
        )
        body = ApiKeyCreatedOutput(key, context={"raw_key": raw}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: ApiKeyOutput(many=True)})
    def get(self, request: Request) -> Response:
        keys = ApiKey.objects.filter(marketplace=self.marketplace(request))
        return Response(paginate(keys, request, render_keys))


class ApiKeyRevokeApi(ApiView):
    required_scope = Scope.ADMIN

    @extend_schema(request=None, responses={200: ApiKeyOutput})
    def post(self, request: Request, key_id: str) -> Response:
        key = ApiKey.objects.filter(marketplace=self.marketplace(request), public_id=key_id).first()
        if key is None:
            raise ApiKeyNotFoundError("API key not found.", key_id=key_id)
        return Response(ApiKeyOutput(api_key_revoke(key=key, reason="revoked via API")).data)
