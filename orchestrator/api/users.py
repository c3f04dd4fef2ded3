"""Users: POST/GET /api/v1/users, GET /api/v1/users/{id}."""

from collections.abc import Sequence
from typing import Any, cast

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, StrictSerializer, validated
from orchestrator.models import MarketplaceUser, Scope
from orchestrator.selectors import user_get, user_list
from orchestrator.services import user_create


class UserCreateInput(StrictSerializer):
    external_user_id = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")
    type = serializers.ChoiceField(
        choices=MarketplaceUser.Type.choices, default=MarketplaceUser.Type.BOTH
    )


class UserListFilters(StrictSerializer):
    type = serializers.ChoiceField(choices=MarketplaceUser.Type.choices, required=False)
    external_user_id = serializers.CharField(required=False)
    email = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


class UserOutput(serializers.Serializer[MarketplaceUser]):
    id = serializers.CharField(source="public_id")
    external_user_id = serializers.CharField()
    email = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def render_users(users: Sequence[MarketplaceUser]) -> list[Any]:
    return list(UserOutput(cast(Any, users), many=True).data)


class UserListCreateApi(ApiView):
    method_scopes = {"GET": Scope.READ, "POST": Scope.WRITE}

    @extend_schema(request=UserCreateInput, responses={201: UserOutput, 200: UserOutput})
    def post(self, request: Request) -> Response:
        data = validated(UserCreateInput, request.data)
        user, created = user_create(marketplace=self.marketplace(request), **data)
        return Response(
            UserOutput(user).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(
        parameters=[UserListFilters],
        responses={200: UserOutput(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = validated(UserListFilters, request.query_params.dict())
        filters.pop("limit", None)
        filters.pop("cursor", None)
        users = user_list(marketplace=self.marketplace(request), **filters)
        return Response(paginate(users, request, render_users))


class UserDetailApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(
        parameters=[OpenApiParameter("user_id", str, OpenApiParameter.PATH)],
        responses={200: UserOutput},
    )
    def get(self, request: Request, user_id: str) -> Response:
        user = user_get(marketplace=self.marketplace(request), user_id=user_id)
        return Response(UserOutput(user).data)
