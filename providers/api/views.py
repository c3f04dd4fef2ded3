"""Top-ups, withdrawals and Airtm links: /api/v1/topups, /withdrawals, /users/{id}/airtm/link.

A create answers 201 once Airtm has the payin/payout, and 202 when Airtm's answer is not
known yet (timeout, outage): the object then waits in its first state with `last_error`
set, and a task and the janitor finish the job. Nothing is created twice either way.
"""

import contextlib
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views import View
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from ledger.money import Money
from orchestrator.api.errors import json_error
from orchestrator.api.pagination import paginate
from orchestrator.api.views import ApiView, validated
from orchestrator.models import Scope
from orchestrator.selectors import user_get
from providers.api.serializers import (
    AirtmLinkInput,
    AirtmLinkOutput,
    TopUpCreateInput,
    TopUpListFilters,
    TopUpOutput,
    WithdrawalCreateInput,
    WithdrawalListFilters,
    WithdrawalOutput,
)
from providers.clients.errors import ProviderError
from providers.models import TopUp, Withdrawal
from providers.selectors import topup_get, topup_list, withdrawal_get, withdrawal_list
from providers.services.links import airtm_link
from providers.services.topups import topup_cancel, topup_create, topup_sync
from providers.services.withdrawals import (
    withdrawal_cancel,
    withdrawal_commit,
    withdrawal_create,
    withdrawal_sync,
)


def _created_status(waiting: bool) -> int:
    return 202 if waiting else 201


def _list_filters(
    serializer: type[TopUpListFilters | WithdrawalListFilters], request: Request
) -> dict[str, Any]:
    filters = validated(serializer, request.query_params.dict())
    filters.pop("limit", None)
    filters.pop("cursor", None)
    return filters


def _render_topups(rows: Sequence[TopUp]) -> list[Any]:
    return list(TopUpOutput(cast(Any, rows), many=True).data)


def _render_withdrawals(rows: Sequence[Withdrawal]) -> list[Any]:
    return list(WithdrawalOutput(cast(Any, rows), many=True).data)


# --- Top-ups -----------------------------------------------------------------------------------


class TopUpListCreateApi(ApiView):
    method_scopes = {"GET": Scope.READ, "POST": Scope.WRITE}

    @extend_schema(request=TopUpCreateInput, responses={201: TopUpOutput, 202: TopUpOutput})
    def post(self, request: Request) -> Response:
        marketplace = self.marketplace(request)
        data = validated(TopUpCreateInput, request.data)
        user = user_get(marketplace=marketplace, user_id=data["user_id"])
        amount = Money.parse(data["amount"], data.get("currency", "USD"))
        topup = topup_create(
            marketplace=marketplace,
            user=user,
            amount=amount,
            description=data.get("description", ""),
            return_url=data.get("return_url", ""),
            cancel_url=data.get("cancel_url", ""),
            metadata=data.get("metadata"),
        )
        return Response(
            TopUpOutput(topup).data,
            status=_created_status(topup.status == TopUp.Status.CREATED),
        )

    @extend_schema(parameters=[TopUpListFilters], responses={200: TopUpOutput(many=True)})
    def get(self, request: Request) -> Response:
        topups = topup_list(
            marketplace=self.marketplace(request), **_list_filters(TopUpListFilters, request)
        )
        return Response(paginate(topups, request, _render_topups))


class TopUpDetailApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: TopUpOutput})
    def get(self, request: Request, topup_id: str) -> Response:
        return Response(
            TopUpOutput(topup_get(marketplace=self.marketplace(request), topup_id=topup_id)).data
        )


class TopUpRefreshApi(ApiView):
    """Read the payin from Airtm now and apply it (read scope, as upstream)."""

    required_scope = Scope.READ

    @extend_schema(request=None, responses={200: TopUpOutput})
    def post(self, request: Request, topup_id: str) -> Response:
        topup = topup_get(marketplace=self.marketplace(request), topup_id=topup_id)
        return Response(TopUpOutput(topup_sync(topup_id=topup.pk)).data)


class TopUpCancelApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=None, responses={200: TopUpOutput})
    def post(self, request: Request, topup_id: str) -> Response:
        topup = topup_get(marketplace=self.marketplace(request), topup_id=topup_id)
        return Response(TopUpOutput(topup_cancel(topup=topup, by="user")).data)


class TopUpCallbackView(View):
    """Where Airtm sends the payer back. Public; the redirect is not proof of payment.

    We ask Airtm what happened (best effort), then send the payer on to the marketplace's
    return or cancel URL with the top-up id and status, or show a small page if it set none.
    """

    def get(self, request: HttpRequest, topup_id: str) -> HttpResponse:
        topup = TopUp.objects.select_related("user").filter(public_id=topup_id[:40]).first()
        if topup is None:
            return json_error(404, "TOPUP_NOT_FOUND", "Top-up not found.", topup_id=topup_id[:40])
        if not topup.is_final:
            # If Airtm cannot be asked, the webhook or the janitor will tell; the payer still
            # gets a page.
            with contextlib.suppress(ProviderError):
                topup = topup_sync(topup_id=topup.pk)
        failed = topup.status in (TopUp.Status.CANCELED, TopUp.Status.FAILED)
        target = topup.cancel_url if failed and topup.cancel_url else topup.return_url
        if target:
            query = urlencode({"topup_id": topup.public_id, "status": topup.status})
            return HttpResponseRedirect(f"{target}{'&' if '?' in target else '?'}{query}")
        return render(request, "providers/topup_return.html", {"topup": topup})


# --- Withdrawals -------------------------------------------------------------------------------


class WithdrawalListCreateApi(ApiView):
    method_scopes = {"GET": Scope.READ, "POST": Scope.WRITE}

    @extend_schema(
        request=WithdrawalCreateInput, responses={201: WithdrawalOutput, 202: WithdrawalOutput}
    )
    def post(self, request: Request) -> Response:
        marketplace = self.marketplace(request)
        data = validated(WithdrawalCreateInput, request.data)
        user = user_get(marketplace=marketplace, user_id=data["user_id"])
        amount = Money.parse(data["amount"], data.get("currency", "USD"))
        withdrawal = withdrawal_create(
            marketplace=marketplace,
            user=user,
            amount=amount,
            description=data.get("description", ""),
            commit=data["commit"],
            destination_email=data.get("destination_email", ""),
            metadata=data.get("metadata"),
        )
        waiting = withdrawal.status == Withdrawal.Status.CREATED and not withdrawal.airtm_payout_id
        return Response(WithdrawalOutput(withdrawal).data, status=_created_status(waiting))

    @extend_schema(parameters=[WithdrawalListFilters], responses={200: WithdrawalOutput(many=True)})
    def get(self, request: Request) -> Response:
        withdrawals = withdrawal_list(
            marketplace=self.marketplace(request), **_list_filters(WithdrawalListFilters, request)
        )
        return Response(paginate(withdrawals, request, _render_withdrawals))


class WithdrawalDetailApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(responses={200: WithdrawalOutput})
    def get(self, request: Request, withdrawal_id: str) -> Response:
        withdrawal = withdrawal_get(
            marketplace=self.marketplace(request), withdrawal_id=withdrawal_id
        )
        return Response(WithdrawalOutput(withdrawal).data)


class WithdrawalCommitApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=None, responses={200: WithdrawalOutput, 202: WithdrawalOutput})
    def post(self, request: Request, withdrawal_id: str) -> Response:
        withdrawal = withdrawal_get(
            marketplace=self.marketplace(request), withdrawal_id=withdrawal_id
        )
        withdrawal = withdrawal_commit(withdrawal=withdrawal)
        waiting = withdrawal.status == Withdrawal.Status.CREATED
        return Response(WithdrawalOutput(withdrawal).data, status=202 if waiting else 200)


class WithdrawalRefreshApi(ApiView):
    required_scope = Scope.READ

    @extend_schema(request=None, responses={200: WithdrawalOutput})
    def post(self, request: Request, withdrawal_id: str) -> Response:
        withdrawal = withdrawal_get(
            marketplace=self.marketplace(request), withdrawal_id=withdrawal_id
        )
        return Response(WithdrawalOutput(withdrawal_sync(withdrawal_id=withdrawal.pk)).data)


class WithdrawalCancelApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=None, responses={200: WithdrawalOutput})
    def post(self, request: Request, withdrawal_id: str) -> Response:
        withdrawal = withdrawal_get(
            marketplace=self.marketplace(request), withdrawal_id=withdrawal_id
        )
        return Response(WithdrawalOutput(withdrawal_cancel(withdrawal=withdrawal, by="user")).data)


# --- Airtm links -------------------------------------------------------------------------------


class AirtmLinkApi(ApiView):
    required_scope = Scope.WRITE

    @extend_schema(request=AirtmLinkInput, responses={200: AirtmLinkOutput})
    def post(self, request: Request, user_id: str) -> Response:
        user = user_get(marketplace=self.marketplace(request), user_id=user_id)
        data = validated(AirtmLinkInput, request.data)
        return Response(AirtmLinkOutput(airtm_link(user=user, email=data["email"])).data)
