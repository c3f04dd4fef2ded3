from typing import Any

from rest_framework import serializers

from ledger.models import Account, Posting
from ledger.money import EXPONENTS, Money
from orchestrator.api.views import StrictSerializer


class AdjustmentInput(StrictSerializer):
    # Any JSON here: Money.parse answers INVALID_AMOUNT_FORMAT / INVALID_CURRENCY itself,
    # so a float amount is an amount error, not a generic type error.
    amount = serializers.JSONField(allow_null=True)
    currency = serializers.JSONField(required=False)  # defaults to USD, as upstream
    reason = serializers.CharField(max_length=500)
    reference = serializers.CharField(max_length=150, required=False)


class StatementFilters(StrictSerializer):
    type = serializers.CharField(required=False, max_length=60)
    account = serializers.ChoiceField(
        choices=[c for c in Account.Kind.choices if c[0] != Account.Kind.SYSTEM], required=False
    )
    currency = serializers.ChoiceField(choices=list(EXPONENTS), required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    limit = serializers.CharField(required=False)
    cursor = serializers.CharField(required=False)


class StatementLineOutput(serializers.Serializer[Posting]):
    id = serializers.CharField(source="entry.public_id")
    type = serializers.CharField(source="entry.kind")
    reference = serializers.CharField(source="entry.reference")
    memo = serializers.CharField(source="entry.memo")
    account = serializers.CharField(source="account.kind")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    direction = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="entry.created_at")

    def get_amount(self, posting: Posting) -> str:
        return Money(abs(posting.amount), posting.currency).text()

    def get_direction(self, posting: Posting) -> str:
        return "credit" if posting.amount > 0 else "debit"


class BalanceOutput(serializers.Serializer[Any]):
    user_id = serializers.CharField()
    balances = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
