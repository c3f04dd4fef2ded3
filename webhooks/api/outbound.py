"""Outbound webhook API: endpoints (/api/v1/webhooks/endpoints) and deliveries
(/api/v1/webhooks/deliveries).

Reading needs `read`; changing endpoints (they hold signing secrets) needs `admin`; replaying
deliveries needs `write`. A secret appears in the answer that made it (create, rotate) and
never again; an Idempotency-Key replay of that answer shows it redacted.
"""

from collections.abc import Sequence
from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, StrictSerializer, validated
from orchestrator.catalog import parse_patterns, patterns_q
from orchestrator.errors import InvalidStateError, NotFoundError, ValidationFailedError
from orchestrator.models import Marketplace, Scope
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.outbound import (
    deliveries_replay,
    endpoint_create,
    endpoint_delete,
    endpoint_ping,
    endpoint_rotate_secret,
    endpoint_update,
)

REPLAY_MAX = 1000


class WebhookEndpointNotFoundError(NotFoundError):
    code = "WEBHOOK_ENDPOINT_NOT_FOUND"


class WebhookDeliveryNotFoundError(NotFoundError):
    code = "WEBHOOK_DELIVERY_NOT_FOUND"


def endpoint_get(*, marketplace: Marketplace, endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(
        marketplace=marketplace, public_id=endpoint_id, deleted_at=None
    ).first()
    if endpoint is None:
        raise WebhookEndpointNotFoundError("Webhook endpoint not found.", endpoint_id=endpoint_id)
    return endpoint


def deliveries_of(marketplace: Marketplace) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint__marketplace=marketplace).select_related(
        "endpoint", "event"
    )


def delivery_get(*, marketplace: Marketplace, delivery_id: str) -> WebhookDelivery:
    delivery = deliveries_of(marketplace).filter(public_id=delivery_id).first()
    if delivery is None:
        raise WebhookDeliveryNotFoundError("Webhook delivery not found.", delivery_id=delivery_id)
    return delivery


# --- Serializers ------------------------------------------------------------------------------


class EventTypesField(serializers.ListField):
    child = serializers.CharField(max_length=120)


class EndpointCreateInput(StrictSerializer):
    url = serializers.CharField(max_length=2000)
    event_types = EventTypesField(allow_empty=False, max_length=100, default=["*"])
    description = serializers.CharField(
        max_length=500, required=False, default="", allow_blank=True
    )


class EndpointUpdateInput(StrictSerializer):
    url = serializers.CharField(max_length=2000, required=False)
    event_types = EventTypesField(allow_empty=False, max_length=100, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


class RotateInput(StrictSerializer):
    overlap_seconds = serializers.IntegerField(required=False, min_value=0)


class EndpointOutput(serializers.Serializer[WebhookEndpoint]):
    id = serializers.CharField(source="public_id")
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField(source="is_enabled")
    disabled_reason = serializers.CharField()
    disabled_at = serializers.DateTimeField(allow_null=True)
    failing_since = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class EndpointWithSecretOutput(EndpointOutput):
    secret = serializers.SerializerMethodField()

    def get_secret(self, obj: WebhookEndpoint) -> str:
        return str(self.context["secret"])


class RotatedOutput(EndpointWithSecretOutput):
    previous_secret_expires_at = serializers.SerializerMethodField()

    def get_previous_secret_expires_at(self, obj: WebhookEndpoint) -> str:
        return str(self.context["previous_expires_at"].isoformat())


class AttemptOutput(serializers.Serializer[WebhookAttempt]):
    number = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    succeeded = serializers.BooleanField()
    error = serializers.CharField()
    response_body = serializers.CharField()


class DeliveryOutput(serializers.Serializer[WebhookDelivery]):
    id = serializers.CharField(source="public_id")
    endpoint_id = serializers.CharField(source="endpoint.public_id")
    event_id = serializers.CharField(source="event.public_id")
    event_type = serializers.CharField()
    status = serializers.CharField()
    attempt_count = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)


class DeliveryDetailOutput(DeliveryOutput):
    attempts = AttemptOutput(many=True)


class DeliveryFilters(StrictSerializer):
    endpoint_id = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)
    types = serializers.CharField(required=False)
    event_id = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


class ReplayInput(StrictSerializer):
    endpoint_id = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)
    types = serializers.CharField(required=False)
    event_id = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


def render_endpoints(rows: Sequence[WebhookEndpoint]) -> list[Any]:
    return list(EndpointOutput(cast(Any, rows), many=True).data)


def render_deliveries(rows: Sequence[WebhookDelivery]) -> list[Any]:
    return list(DeliveryOutput(cast(Any, rows), many=True).data)


def filtered_deliveries(
    marketplace: Marketplace, filters: dict[str, Any]
) -> QuerySet[WebhookDelivery]:
    rows = deliveries_of(marketplace)
    if filters.get("endpoint_id"):
        rows = rows.filter(
            endpoint=endpoint_get(marketplace=marketplace, endpoint_id=filters["endpoint_id"])
        )
    if filters.get("status"):
        rows = rows.filter(status=filters["status"])
    if filters.get("event_id"):
        rows = rows.filter(event__public_id=filters["event_id"])
    if filters.get("created_after"):
        rows = rows.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        rows = rows.filter(created_at__lt=filters["created_before"])
    patterns = parse_patterns(filters.get("types"))
    return rows.filter(patterns_q(patterns, field="event_type"))


# --- Views ------------------------------------------------------------------------------------


class EndpointListCreateApi(ApiView):
    method_scopes = {"GET": Scope.READ, "POST": Scope.ADMIN}
    secret_response_fields = ("secret",)

    @extend_schema(request=EndpointCreateInput, responses={201: EndpointWithSecretOutput})
    def post(self, request: Request) -> Response:
        """Register an endpoint. The `secret` is in this answer only."""
        data = validated(EndpointCreateInput, request.data)
        endpoint, secret = endpoint_create(marketplace=self.marketplace(request), **data)
        body = EndpointWithSecretOutput(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: EndpointOutput(many=True)})
    def get(self, request: Request) -> Response:
        rows = WebhookEndpoint.objects.filter(
            marketplace=self.marketplace(request), deleted_at=None
        )
        return Response(paginate(rows, request, render_endpoints))


class EndpointDetailApi(ApiView):
    method_scopes = {"GET": Scope.READ, "PATCH": Scope.ADMIN, "DELETE": Scope.ADMIN}

    @extend_schema(responses={200: EndpointOutput})
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = endpoint_get(marketplace=self.marketplace(request), endpoint_id=endpoint_id)
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(request=EndpointUpdateInput, responses={200: EndpointOutput})
    def patch(self, request: Request, endpoint_id: str) -> Response:
        """Change the URL, filter or description; `enabled` turns deliveries off and on."""
        endpoint = endpoint_get(marketplace=self.marketplace(request), endpoint_id=endpoint_id)
        data = validated(EndpointUpdateInput, request.data)
        return Response(EndpointOutput(endpoint_update(endpoint=endpoint, **data)).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = endpoint_get(marketplace=self.marketplace(request), endpoint_id=endpoint_id)
        endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretApi(ApiView):
    required_scope = Scope.ADMIN
    secret_response_fields = ("secret",)

    @extend_schema(request=RotateInput, responses={200: RotatedOutput})
    def post(self, request: Request, endpoint_id: str) -> Response:
        """A new secret (shown once); the previous one keeps signing for `overlap_seconds`
        (default WEBHOOK_ROTATION_OVERLAP_SECONDS), so each delivery carries both signatures
        until then."""
        endpoint = endpoint_get(marketplace=self.marketplace(request), endpoint_id=endpoint_id)
        data = validated(RotateInput, request.data or {})
        endpoint, secret, expires_at = endpoint_rotate_secret(
            endpoint=endpoint, overlap_seconds=data.get("overlap_seconds")
        )
        context = {"secret": secret, "previous_expires_at": expires_at}
        return Response(RotatedOutput(endpoint, context=context).data)


class EndpointPingApi(ApiView):
    required_scope = Scope.ADMIN

    @extend_schema(request=None, responses={202: DeliveryOutput})
    def post(self, request: Request, endpoint_id: str) -> Response:
        """Send a signed `webhook.ping` to this endpoint; follow it at the delivery's URL."""
        endpoint = endpoint_get(marketplace=self.marketplace(request), endpoint_id=endpoint_id)
        delivery = endpoint_ping(endpoint=endpoint)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryListApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(parameters=[DeliveryFilters], responses={200: DeliveryOutput(many=True)})
    def get(self, request: Request) -> Response:
        filters = validated(DeliveryFilters, request.query_params.dict())
        rows = filtered_deliveries(self.marketplace(request), filters)
        return Response(paginate(rows, request, render_deliveries))


class DeliveryDetailApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: DeliveryDetailOutput})
    def get(self, request: Request, delivery_id: str) -> Response:
        """A delivery with every attempt (status, duration, the start of the response)."""
        delivery = delivery_get(marketplace=self.marketplace(request), delivery_id=delivery_id)
        return Response(DeliveryDetailOutput(delivery).data)


class DeliveryReplayApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(
        request=None, responses={202: DeliveryOutput}, operation_id="webhooks_delivery_replay"
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        """Send this delivery again, whatever its state (409 if its endpoint is disabled)."""
        delivery = delivery_get(marketplace=self.marketplace(request), delivery_id=delivery_id)
        if not deliveries_replay(WebhookDelivery.objects.filter(pk=delivery.pk)):
            raise _disabled(delivery.endpoint)
        delivery.refresh_from_db()
        return Response(DeliveryDetailOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveriesReplayApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(
        request=ReplayInput, responses={202: None}, operation_id="webhooks_deliveries_replay"
    )
    def post(self, request: Request) -> Response:
        """Send again every delivery the filters select (at most 1000, oldest first;
        deliveries of disabled endpoints are skipped). Answers how many were queued."""
        filters = validated(ReplayInput, request.data)
        rows = filtered_deliveries(self.marketplace(request), filters)
        ids = list(rows.order_by("pk").values_list("pk", flat=True)[: REPLAY_MAX + 1])
        if len(ids) > REPLAY_MAX:
            raise ValidationFailedError(
                f"The filters select more than {REPLAY_MAX} deliveries; narrow them.",
                fields={"non_field_errors": ["Too many deliveries."]},
            )
        queued = deliveries_replay(WebhookDelivery.objects.filter(pk__in=ids))
        return Response(
            {"queued": len(queued), "delivery_ids": [d.public_id for d in queued]},
            status=status.HTTP_202_ACCEPTED,
        )


def _disabled(endpoint: WebhookEndpoint) -> Exception:
    return InvalidStateError(
        "The delivery's endpoint is disabled; enable it first.", endpoint_id=endpoint.public_id
    )
