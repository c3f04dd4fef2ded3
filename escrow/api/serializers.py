from decimal import Decimal
from typing import Any

from rest_framework import serializers

from escrow.models import Dispute, Escrow, Milestone, Order
from escrow.selectors import order_timeline
from ledger.money import Money
from orchestrator.api.views import StrictSerializer


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    if len(str(value)) > 4000:
        raise serializers.ValidationError("At most 4,000 characters of metadata.")
    return value


class MilestoneItemInput(StrictSerializer):
    milestone_ref = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,100}$", max_length=100)
    title = serializers.CharField(max_length=200)
    # Any JSON: Money.parse answers INVALID_AMOUNT_FORMAT itself.
    amount = serializers.JSONField(allow_null=True)


class OrderCreateInput(StrictSerializer):
    buyer_id = serializers.CharField(max_length=40)
    seller_id = serializers.CharField(max_length=40)
    amount = serializers.JSONField(allow_null=True)
    currency = serializers.JSONField(required=False)  # defaults to USD
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    client_order_ref = serializers.CharField(max_length=200, required=False, allow_null=True)
    milestones = serializers.ListField(
        child=MilestoneItemInput(), required=False, min_length=1, max_length=10
    )
    metadata = serializers.DictField(required=False)

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        return _metadata(value)


class ReasonInput(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ReleaseInput(ReasonInput):
    milestone_ref = serializers.CharField(max_length=100, required=False)


class CompleteMilestoneInput(StrictSerializer):
    evidence = serializers.CharField(max_length=500, required=False, allow_blank=True)


class OpenDisputeInput(StrictSerializer):
    order_id = serializers.CharField(max_length=40, required=False)  # upstream sends it; path wins
    opened_by = serializers.ChoiceField(choices=Dispute.Party.choices)
    reason = serializers.ChoiceField(choices=Dispute.Reason.choices)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    evidence = serializers.ListField(
        child=serializers.CharField(max_length=500), required=False, max_length=20
    )


class AssignDisputeInput(StrictSerializer):
    assigned_to = serializers.CharField(max_length=200)


class ResolveDisputeInput(StrictSerializer):
    decision = serializers.ChoiceField(choices=Dispute.Decision.choices)
    release_amount = serializers.JSONField(required=False, allow_null=True)
    refund_amount = serializers.JSONField(required=False, allow_null=True)
    note = serializers.CharField(max_length=5000, required=False, allow_blank=True)


class OrderListFilters(StrictSerializer):
    status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
    buyer_id = serializers.CharField(required=False, max_length=40)
    seller_id = serializers.CharField(required=False, max_length=40)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


class DisputeListFilters(StrictSerializer):
    status = serializers.ChoiceField(choices=Dispute.Status.choices, required=False)
    order_id = serializers.CharField(required=False, max_length=40)
    opened_by = serializers.ChoiceField(choices=Dispute.Party.choices, required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


def _usd(amount: Decimal | None) -> str | None:
    return (
        None if amount is None else Money(Decimal(amount).quantize(Decimal("0.01")), "USD").text()
    )


class MilestoneOutput(serializers.Serializer[Any]):
    id = serializers.CharField(source="public_id")
    milestone_ref = serializers.CharField(source="ref")
    index = serializers.IntegerField()
    title = serializers.CharField()
    amount = serializers.SerializerMethodField()
    status = serializers.CharField()
    evidence = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()
    approved_at = serializers.DateTimeField()
    released_at = serializers.DateTimeField()

    def get_amount(self, obj: Milestone) -> str | None:
        return _usd(obj.amount)


class EscrowOutput(serializers.Serializer[Any]):
    id = serializers.CharField(source="public_id")
    status = serializers.CharField()
    type = serializers.CharField(source="kind")
    contract_id = serializers.CharField()
    engagement_id = serializers.CharField()
    amount = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    platform_fee_bps = serializers.IntegerField()
    roles = serializers.DictField()
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    funded_at = serializers.DateTimeField()
    released_at = serializers.DateTimeField()
    refunded_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField()

    def get_amount(self, obj: Escrow) -> str:
        return obj.usdc.text()

    def get_currency(self, obj: Escrow) -> str:
        return "USDC"


class DisputeSummaryOutput(serializers.Serializer[Any]):
    id = serializers.CharField(source="public_id")
    order_id = serializers.CharField(source="order.public_id")
    status = serializers.CharField()
    opened_by = serializers.CharField()
    reason = serializers.CharField()
    description = serializers.CharField()
    evidence = serializers.ListField()
    assigned_to = serializers.CharField()
    decision = serializers.CharField()
    release_amount = serializers.SerializerMethodField()
    refund_amount = serializers.SerializerMethodField()
    decision_note = serializers.CharField()
    decided_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField()

    def get_release_amount(self, obj: Dispute) -> str | None:
        return _usd(obj.release_amount)

    def get_refund_amount(self, obj: Dispute) -> str | None:
        return _usd(obj.refund_amount)


class OrderOutput(serializers.Serializer[Any]):
    id = serializers.CharField(source="public_id")
    client_order_ref = serializers.CharField()
    buyer_id = serializers.CharField(source="buyer.public_id")
    seller_id = serializers.CharField(source="seller.public_id")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    status = serializers.CharField()
    outcome = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    metadata = serializers.DictField()
    platform_fee_bps = serializers.IntegerField()
    cancel_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField()
    escrow = serializers.SerializerMethodField()
    milestones = serializers.SerializerMethodField()
    dispute = serializers.SerializerMethodField()

    def get_amount(self, obj: Order) -> str:
        return obj.money.text()

    # A view that knows the order's escrow, milestones or disputes passes them in the
    # context ({"escrow": ..., "milestones": [...], "disputes": [...]}) to spare the queries.

    def get_escrow(self, obj: Order) -> dict[str, Any] | None:
        if "escrow" in self.context:
            escrow = self.context["escrow"]
        else:
            try:
                escrow = obj.escrow
            except Escrow.DoesNotExist:
                escrow = None
        return None if escrow is None else dict(EscrowOutput(escrow).data)

    def get_milestones(self, obj: Order) -> list[Any]:
        found = self.context.get("milestones")
        milestones = sorted(obj.milestones.all() if found is None else found, key=lambda m: m.index)
        return list(MilestoneOutput(milestones, many=True).data)

    def get_dispute(self, obj: Order) -> dict[str, Any] | None:
        """The dispute in progress, else the latest one."""
        found = self.context.get("disputes")
        disputes = sorted(
            obj.disputes.all() if found is None else found, key=lambda d: d.pk, reverse=True
        )
        current = next((d for d in disputes if d.status != Dispute.Status.RESOLVED), None)
        dispute = current or (disputes[0] if disputes else None)
        return None if dispute is None else dict(DisputeSummaryOutput(dispute).data)


class TimelineItemOutput(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    title = serializers.CharField()
    details = serializers.DictField()


class OrderDetailOutput(OrderOutput):
    timeline = serializers.SerializerMethodField()

    def get_timeline(self, obj: Order) -> list[Any]:
        return list(TimelineItemOutput(order_timeline(order=obj), many=True).data)


class DisputeOutput(DisputeSummaryOutput):
    order = serializers.SerializerMethodField()

    def get_order(self, obj: Dispute) -> dict[str, Any]:
        return dict(OrderOutput(obj.order).data)
