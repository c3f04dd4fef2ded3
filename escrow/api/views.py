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
    AssignDisputeInput,
    CompleteMilestoneInput,
    DisputeListFilters,
    DisputeOutput,
    DisputeSummaryOutput,
    MilestoneOutput,
    OpenDisputeInput,
    OrderCreateInput,
    OrderDetailOutput,
    OrderListFilters,
    OrderOutput,
    ReasonInput,
    ReleaseInput,
    ResolveDisputeInput,
)
from escrow.models import Dispute, Milestone, Order
from escrow.selectors import (
    dispute_get,
    dispute_list,
    order_get,
    order_list,
    order_ref,
    users_get,
)
from escrow.services.disputes import dispute_assign, dispute_resolve
from escrow.services.escrows import escrow_deploy, escrow_fund
from escrow.services.milestones import milestone_approve, milestone_complete
from escrow.services.orders import MilestoneInput, order_cancel, order_create, order_reserve
from escrow.services.resolution import order_dispute, order_refund, order_release
from ledger.money import Money
from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, validated
from orchestrator.models import Marketplace, Scope


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
        buyer, seller = users_get(
            marketplace=marketplace, user_ids=[data["buyer_id"], data["seller_id"]]
        )
        order, created = order_create(
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
        known = {"escrow": None, "milestones": created, "disputes": []}
        return Response(OrderOutput(order, context=known).data, status=201)

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
        order = order_reserve(marketplace=self.marketplace(request), order_id=order_id)
        # Reserved orders have no escrow nor dispute yet.
        return Response(OrderOutput(order, context={"escrow": None, "disputes": []}).data)


class OrderCancelApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=ReasonInput, responses={200: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        order = order_ref(marketplace=self.marketplace(request), order_id=order_id)
        data = validated(ReasonInput, request.data)
        order = order_cancel(order=order, reason=data.get("reason", ""))
        return Response(OrderOutput(order, context={"disputes": []}).data)


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


# --- Escrow, milestones, resolution ------------------------------------------------------------


class _Accepted(ApiView):
    required_scope = Scope.WRITE

    def accepted(self, marketplace: Marketplace, order: Order) -> Response:
        return Response(_fresh(marketplace, order), status=202)


class OrderEscrowApi(_Accepted):
    """Deploy the order's escrow contract (FUNDS_RESERVED -> ESCROW_CREATING)."""

    @extend_schema(request=None, responses={202: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        return self.accepted(marketplace, escrow_deploy(order=_order(marketplace, order_id)))


class OrderEscrowFundApi(_Accepted):
    """Fund the escrow from the platform's treasury (-> ESCROW_FUNDING, then IN_PROGRESS)."""

    @extend_schema(request=None, responses={202: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        return self.accepted(marketplace, escrow_fund(order=_order(marketplace, order_id)))


class MilestoneCompleteApi(_Accepted):
    @extend_schema(request=CompleteMilestoneInput, responses={202: MilestoneOutput})
    def post(self, request: Request, order_id: str, ref: str) -> Response:
        order = _order(self.marketplace(request), order_id)
        data = validated(CompleteMilestoneInput, request.data)
        milestone = milestone_complete(order=order, ref=ref, evidence=data.get("evidence", ""))
        return Response(MilestoneOutput(Milestone.objects.get(pk=milestone.pk)).data, status=202)


class MilestoneApproveApi(_Accepted):
    @extend_schema(request=None, responses={202: MilestoneOutput})
    def post(self, request: Request, order_id: str, ref: str) -> Response:
        order = _order(self.marketplace(request), order_id)
        milestone = milestone_approve(order=order, ref=ref)
        return Response(MilestoneOutput(Milestone.objects.get(pk=milestone.pk)).data, status=202)


class ReleaseApi(_Accepted):
    @extend_schema(request=ReleaseInput, responses={202: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        order = _order(marketplace, order_id)
        data = validated(ReleaseInput, request.data)
        order = order_release(
            order=order, milestone_ref=data.get("milestone_ref", ""), reason=data.get("reason", "")
        )
        return self.accepted(marketplace, order)


class RefundApi(_Accepted):
    @extend_schema(request=ReasonInput, responses={202: OrderOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        order = _order(marketplace, order_id)
        data = validated(ReasonInput, request.data)
        return self.accepted(marketplace, order_refund(order=order, reason=data.get("reason", "")))


class OpenDisputeApi(ApiView):
    """Open a dispute; 201 with the dispute, or 200 with the one already open."""

    required_scope = Scope.WRITE

    @extend_schema(request=OpenDisputeInput, responses={201: DisputeOutput, 200: DisputeOutput})
    def post(self, request: Request, order_id: str) -> Response:
        marketplace = self.marketplace(request)
        order = _order(marketplace, order_id)
        data = validated(OpenDisputeInput, request.data)
        dispute, created = order_dispute(
            order=order,
            opened_by=data["opened_by"],
            reason=data["reason"],
            description=data.get("description", ""),
            evidence=data.get("evidence"),
        )
        return Response(_dispute(marketplace, dispute.public_id), status=201 if created else 200)


# --- Disputes ----------------------------------------------------------------------------------


def _dispute(marketplace: Marketplace, dispute_id: str) -> dict[str, Any]:
    return dict(DisputeOutput(dispute_get(marketplace=marketplace, dispute_id=dispute_id)).data)


def _render_disputes(rows: Sequence[Dispute]) -> list[Any]:
    return list(DisputeSummaryOutput(cast(Any, rows), many=True).data)


class DisputeListApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(
        parameters=[DisputeListFilters], responses={200: DisputeSummaryOutput(many=True)}
    )
    def get(self, request: Request) -> Response:
        filters = validated(DisputeListFilters, request.query_params.dict())
        filters.pop("limit", None)
        filters.pop("cursor", None)
        disputes = dispute_list(marketplace=self.marketplace(request), **filters)
        return Response(paginate(disputes, request, _render_disputes))


class DisputeDetailApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: DisputeOutput})
    def get(self, request: Request, dispute_id: str) -> Response:
        return Response(_dispute(self.marketplace(request), dispute_id))


class DisputeAssignApi(ApiView):
    required_scope = Scope.SUPPORT

    @extend_schema(request=AssignDisputeInput, responses={200: DisputeOutput})
    def post(self, request: Request, dispute_id: str) -> Response:
        marketplace = self.marketplace(request)
        dispute = dispute_get(marketplace=marketplace, dispute_id=dispute_id)
        data = validated(AssignDisputeInput, request.data)
        dispute_assign(dispute=dispute, assigned_to=data["assigned_to"])
        return Response(_dispute(marketplace, dispute_id))


class DisputeResolveApi(ApiView):
    """Decide a dispute under review (202: the payout follows on chain)."""

    required_scope = Scope.SUPPORT

    @extend_schema(request=ResolveDisputeInput, responses={202: DisputeOutput})
    def post(self, request: Request, dispute_id: str) -> Response:
        marketplace = self.marketplace(request)
        dispute = dispute_get(marketplace=marketplace, dispute_id=dispute_id)
        data = validated(ResolveDisputeInput, request.data)

        def amount(name: str) -> Money | None:
            value = data.get(name)
            return None if value is None else Money.parse(value, "USD")

        dispute_resolve(
            dispute=dispute,
            decision=data["decision"],
            release_amount=amount("release_amount"),
            refund_amount=amount("refund_amount"),
            note=data.get("note", ""),
        )
        return Response(_dispute(marketplace, dispute_id), status=202)
