from typing import Any

from rest_framework import serializers

from ledger.money import EXPONENTS, Money
from orchestrator.api.views import StrictSerializer
from providers.models import TopUp, Withdrawal


def _money_text(amount: Any, currency: str) -> str | None:
    return None if amount is None else Money(amount, currency).text()


class _AmountInput(StrictSerializer):
    user_id = serializers.CharField(max_length=40)
    # Any JSON: Money.parse answers INVALID_AMOUNT_FORMAT / INVALID_CURRENCY itself.
    amount = serializers.JSONField(allow_null=True)
    currency = serializers.JSONField(required=False)  # defaults to USD
    description = serializers.CharField(max_length=250, required=False, allow_blank=True)
    metadata = serializers.DictField(required=False)

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        if len(str(value)) > 4000:
            raise serializers.ValidationError("At most 4,000 characters of metadata.")
        return value


class TopUpCreateInput(_AmountInput):
    return_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    cancel_url = serializers.URLField(max_length=500, required=False, allow_blank=True)


class WithdrawalCreateInput(_AmountInput):
    commit = serializers.BooleanField(required=False, default=False)
    destination_email = serializers.EmailField(max_length=254, required=False, allow_blank=True)


class AirtmLinkInput(StrictSerializer):
    email = serializers.EmailField(max_length=254)


class _ListFilters(StrictSerializer):
    user_id = serializers.CharField(required=False, max_length=40)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


class TopUpListFilters(_ListFilters):
    status = serializers.ChoiceField(choices=TopUp.Status.choices, required=False)


class WithdrawalListFilters(_ListFilters):
    status = serializers.ChoiceField(choices=Withdrawal.Status.choices, required=False)


class _FlowOutput(serializers.Serializer[Any]):
    id = serializers.CharField(source="public_id")
    user_id = serializers.CharField(source="user.public_id")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    status = serializers.CharField()
    description = serializers.CharField()
    airtm_status = serializers.CharField()
    failure_reason = serializers.CharField()
    canceled_by = serializers.CharField()
    last_error = serializers.CharField()
    metadata = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()

    def get_amount(self, obj: TopUp | Withdrawal) -> str:
        return obj.money.text()


class TopUpOutput(_FlowOutput):
    confirmation_uri = serializers.CharField()
    airtm_payin_id = serializers.CharField()
    net_amount = serializers.SerializerMethodField()
    airtm_fee = serializers.SerializerMethodField()
    return_url = serializers.CharField()
    cancel_url = serializers.CharField()
    expires_at = serializers.DateTimeField()

    def get_net_amount(self, obj: TopUp) -> str | None:
        return _money_text(obj.net_amount, obj.currency)

    def get_airtm_fee(self, obj: TopUp) -> str | None:
        return _money_text(obj.airtm_fee, obj.currency)


class WithdrawalOutput(_FlowOutput):
    destination = serializers.SerializerMethodField()
    committed = serializers.SerializerMethodField()
    airtm_payout_id = serializers.CharField()
    reason_code = serializers.CharField()
    airtm_fee = serializers.SerializerMethodField()
    net_amount = serializers.SerializerMethodField()
    committed_at = serializers.DateTimeField()

    def get_destination(self, obj: Withdrawal) -> dict[str, str]:
        return {"type": "airtm", "email": obj.destination_email}

    def get_committed(self, obj: Withdrawal) -> bool:
        return obj.commit_requested

    def get_airtm_fee(self, obj: Withdrawal) -> str | None:
        return _money_text(obj.airtm_fee, obj.currency)

    def get_net_amount(self, obj: Withdrawal) -> str | None:
        return _money_text(obj.net_amount, obj.currency)


class AirtmLinkOutput(serializers.Serializer[Any]):
    user_id = serializers.CharField(source="user.public_id")
    email = serializers.EmailField()
    airtm_user_id = serializers.CharField()
    status = serializers.CharField(source="airtm_status")
    verified = serializers.BooleanField(source="is_verified")
    linked_at = serializers.DateTimeField()
    checked_at = serializers.DateTimeField()


CURRENCIES = list(EXPONENTS)
