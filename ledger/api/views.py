"""Balances and statements of a marketplace's users; manual adjustments (admin scope)."""

from collections.abc import Sequence
from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from ledger.api.serializers import (
    AdjustmentInput,
    BalanceOutput,
    StatementFilters,
    StatementLineOutput,
)
from ledger.models import Posting
from ledger.money import Money
from ledger.selectors import user_balances, user_statement
from ledger.services import adjustment_post, new_reference
from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, validated
from orchestrator.models import Scope
from orchestrator.selectors import user_get


def _render_statement(postings: Sequence[Posting]) -> list[Any]:
    return list(StatementLineOutput(cast(Any, postings), many=True).data)


class UserBalanceApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: BalanceOutput})
    def get(self, request: Request, user_id: str) -> Response:
        user = user_get(marketplace=self.marketplace(request), user_id=user_id)
        return Response({"user_id": user.public_id, "balances": user_balances(user=user)})


class UserTransactionsApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(parameters=[StatementFilters], responses={200: StatementLineOutput(many=True)})
    def get(self, request: Request, user_id: str) -> Response:
        user = user_get(marketplace=self.marketplace(request), user_id=user_id)
        filters = validated(StatementFilters, request.query_params.dict())
        filters.pop("limit", None)
        filters.pop("cursor", None)
        kind = filters.pop("type", None)
        postings = user_statement(user=user, kind=kind, **filters)
        return Response(paginate(postings, request, _render_statement))


class _AdjustmentApi(ApiView):
    required_scope = Scope.ADMIN
    direction: str

    @extend_schema(request=AdjustmentInput, responses={200: BalanceOutput})
    def post(self, request: Request, user_id: str) -> Response:
        user = user_get(marketplace=self.marketplace(request), user_id=user_id)
        data = validated(AdjustmentInput, request.data)
        amount = Money.parse(data["amount"], data.get("currency", "USD"))
        entry = adjustment_post(
            user=user,
            amount=amount,
            direction=self.direction,
            reason=data["reason"],
            reference=data.get("reference") or new_reference(f"adjustment.{self.direction}"),
        )
        return Response(
            {
                "entry_id": entry.public_id,
                "reference": entry.reference,
                "amount": amount.text(),
                "currency": amount.currency,
                "user_id": user.public_id,
                "balances": user_balances(user=user),
            }
        )


class UserCreditApi(_AdjustmentApi):
    direction = "credit"


class UserDebitApi(_AdjustmentApi):
    direction = "debit"
