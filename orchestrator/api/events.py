"""Events over the API: the log (GET /api/v1/events/log) and the live stream
(GET /api/v1/events, Server-Sent Events; see orchestrator.streams).

Both show the caller's marketplace only, filter by `types` (comma-separated patterns:
"order.released", "order.*", "*") and `user_id`, and render each event the way webhooks
post it: {"id", "type", "created_at", "aggregate": {"type", "id"}, "data"}.
"""

from collections.abc import Sequence
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.pagination import page_limit, paginate
from orchestrator.api.views import ApiView, StrictSerializer, validated
from orchestrator.catalog import parse_patterns, patterns_q
from orchestrator.errors import ValidationFailedError
from orchestrator.models import Event, Marketplace, Scope
from orchestrator.outbox import Position, events_after, position_of, with_user_filter
from orchestrator.streams import StreamRequest, stream_response


class EventLogFilters(StrictSerializer):
    types = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False)
    aggregate_id = serializers.CharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    after = serializers.CharField(required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


class EventStreamFilters(StrictSerializer):
    types = serializers.CharField(required=False)
    user_id = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


def render_events(rows: Sequence[Event]) -> list[dict[str, Any]]:
    return [row.as_dict() for row in rows]


def resume_position(marketplace: Marketplace, event_id: str, *, field: str) -> Position:
    """The position after which to resume, from an event id the caller was given.

    Raises:
        ValidationFailedError: not an event of this marketplace.
    """
    found = position_of(marketplace_id=marketplace.pk, event_id=event_id)
    if found is None:
        raise ValidationFailedError(
            "Unknown event id to resume from.", fields={field: ["Unknown event id."]}
        )
    return found


class EventLogApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(parameters=[EventLogFilters], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """The marketplace's events, newest first with cursor pagination; or, with
        `after=<event id>`, the events that follow that one in delivery order (oldest
        first, the order SSE sends them), for backfill: continue with `after` set to the
        `next_cursor` of the answer."""
        filters = validated(EventLogFilters, request.query_params.dict())
        marketplace = self.marketplace(request)
        patterns = parse_patterns(filters.get("types"))
        if filters.get("after"):
            return Response(self._after(request, marketplace, patterns, filters))
        rows = Event.objects.filter(marketplace=marketplace).filter(patterns_q(patterns))
        rows = with_user_filter(rows, filters.get("user_id"))
        if filters.get("aggregate_id"):
            rows = rows.filter(aggregate_id=filters["aggregate_id"])
        if filters.get("created_after"):
            rows = rows.filter(created_at__gte=filters["created_after"])
        if filters.get("created_before"):
            rows = rows.filter(created_at__lt=filters["created_before"])
        return Response(paginate(rows, request, render_events))

    def _after(
        self,
        request: Request,
        marketplace: Marketplace,
        patterns: list[str],
        filters: dict[str, Any],
    ) -> dict[str, Any]:
        extra = set(filters) - {"after", "types", "user_id", "limit"}
        if extra:
            raise ValidationFailedError(
                "`after` combines only with types, user_id and limit.",
                fields={name: ["Not with `after`."] for name in sorted(extra)},
            )
        limit = page_limit(request)
        rows = events_after(
            resume_position(marketplace, filters["after"], field="after"),
            marketplace_id=marketplace.pk,
            patterns=patterns,
            user_id=filters.get("user_id"),
            limit=limit + 1,
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        return {
            "data": render_events(rows),
            "pagination": {
                "has_more": has_more,
                "next_cursor": rows[-1].public_id if rows else filters["after"],
            },
        }


class EventStreamApi(ApiView):
    """Server-Sent Events of the marketplace's events, as they commit."""

    required_scope = Scope.READ

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # Clients ask for text/event-stream; errors before the stream starts are JSON.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        parameters=[
            OpenApiParameter("types", str, description="Comma-separated type patterns."),
            OpenApiParameter("user_id", str, description="Only events concerning this user."),
            OpenApiParameter("cursor", str, description="Resume after this event id."),
            OpenApiParameter(
                "Last-Event-ID", str, OpenApiParameter.HEADER, description="As `cursor`."
            ),
        ],
        responses={(200, "text/event-stream"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        """`text/event-stream`: one frame per event (`id:` the event id, `event:` its type,
        `data:` its JSON), a `ping` frame every 15 s. Resumes after `Last-Event-ID` (or
        `cursor`) from the outbox, then follows live; without either it starts now."""
        marketplace = self.marketplace(request)
        query = validated(EventStreamFilters, request.query_params.dict())
        resume_from = request.headers.get("Last-Event-ID") or query.get("cursor")
        if resume_from and "\x00" in resume_from:
            raise ValidationFailedError(
                "Invalid Last-Event-ID.", fields={"cursor": ["Unknown event id."]}
            )
        spec = StreamRequest(
            marketplace_id=marketplace.pk,
            patterns=tuple(parse_patterns(query.get("types"))),
            user_id=query.get("user_id") or None,
            after=(
                resume_position(marketplace, resume_from, field="cursor") if resume_from else None
            ),
        )
        return stream_response(request._request, spec)
