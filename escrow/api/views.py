"""Orders, their escrow and milestones, resolution and disputes: /api/v1/orders, /disputes.

Reads answer 200. Actions that only touch our books (create, reserve, cancel, open a
dispute, assign) answer at once. Actions that need the chain (deploy, fund, complete,
approve, release, refund, resolve) record the request and answer 202 with the order as it
then stands; a Celery task carries them out, and `order.*` / `escrow.*` events (SSE,
webhooks) tell when they are done. In the embedded mode tasks run before the answer.
"""

from collections.abc import Sequence
from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from escrow.api.serializers import (
    MilestoneOutput,
    OrderCreateInput,
    OrderDetailOutput,
    OrderListFilters,
    OrderOutput,
    ReasonInput,
)
from escrow.models import Order
from escrow.selectors import order_get, order_list
from escrow.services.orders import MilestoneInput, order_cancel, order_create, order_reserve
from ledger.money import Money
from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, validated
from orchestrator.models import Marketplace, Scope
from orchestrator.selectors import user_get


def _render_orders(rows: Sequence[Order]) -> list[Any]:
    return list(OrderOutput(cast(Any, rows), many=True).data)


def _order(marketplace: Marketplace, order_id: str) -> Order:
    return order_get(marketplace=marketplace, order_id=order_id)


def _fresh(marketplace: Marketplace, order: Order) -> dict[str, Any]:
    """The order as it stands now (a task may have moved it since the service returned)."""
    return dict(OrderOutput(_order(marketplace, order.public_id)).data)


class OrderListCreateApi(ApiView):
    method_scopes = {"GET": Scope.READ, "POST": Scope.WRITE}

    @extend_schema(request=OrderCreateInput, responses={201: OrderOutput})
    def post(self, request: Request) -> Response:
        marketplace = self.marketplace(request)
        data = validated(OrderCreateInput, request.data)
        currency = data.get("currency", "USD")
        amount = Money.parse(data["amount"], currency)
        milestones = [
            MilestoneInput(
                ref=m["milestone_ref"], title=m["title"], amount=Money.parse(m["amount"], currency)
            )
            for m in data.get("milestones", [])
        ]
        buyer = user_get(marketplace=marketplace, user_id=data["buyer_id"])
        seller = user_get(marketplace=marketplace, user_id=data["seller_id"])
        order = order_create(
            marketplace=marketplace,
            buyer=buyer,
            seller=seller,
            amount=amount,
            title=data["title"],
            description=data.get("description", ""),
            client_order_ref=data.get("client_order_ref"),
            milestones=milestones or None,
            metadata=data.get("metadata"),
        )
        return Response(_fresh(marketplace, order), status=201)

    @extend_schema(parameters=[OrderListFilters], responses={200: OrderOutput(many=True)})
    def get(self, request: Request) -> Response:
        filters = validated(OrderListFilters, request.query_params.dict())
        filters.pop("limit", None)
        filters.pop("cursor", None)
        orders = order_list(marketplace=self.marketplace(request), **filters)
        return Response(paginate(orders, request, _render_orders))


class OrderDetailApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: OrderDetailOutput})
    def get(self, request: Request, order_id: str) -> Response:
        order = _order(self.marketplace(request), order_id)
        return Response(OrderDetailOutput(order).data)


class OrderReserveApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=None, responses={200: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        order = order_reserve(order=_order(marketplace, order_id))
        return Response(_fresh(marketplace, order))


class OrderCancelApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=ReasonInput, responses={200: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        order = _order(marketplace, order_id)
        data = validated(ReasonInput, request.data)
        order = order_cancel(order=order, reason=data.get("reason", ""))
        return Response(_fresh(marketplace, order))


class OrderMilestonesApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: MilestoneOutput(many=True)})
    def get(self, request: Request, order_id: str) -> Response:
        order = _order(self.marketplace(request), order_id)
        milestones = sorted(order.milestones.all(), key=lambda m: m.index)
        return Response(
            {
                "data": MilestoneOutput(milestones, many=True).data,
                "pagination": {"has_more": False, "next_cursor": None},
            }
        )
