"""Back-office forms of the ledger pages (ledger.admin): they shape input, services decide."""

from typing import Any

from django import forms

from ledger.models import Adjustment, ReconciliationCase
from ledger.money import EXPONENTS, Money
from orchestrator.backoffice import DateRangeForm
from orchestrator.errors import DomainError
from orchestrator.models import Marketplace, MarketplaceUser


class EntryExportForm(DateRangeForm):
    marketplace = forms.ModelChoiceField(
        queryset=Marketplace.objects.order_by("name"),
        required=False,
        empty_label="All marketplaces",
    )


class AdjustmentRequestForm(forms.Form):
    user = forms.CharField(label="User id", help_text="The user's public id, usr_…")
    direction = forms.ChoiceField(choices=Adjustment.Direction.choices)
    amount = forms.CharField(help_text='A positive decimal such as "12.50".')
    currency = forms.ChoiceField(choices=[(code, code) for code in EXPONENTS])
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why the balance is wrong and how this fixes it. Kept with the entry.",
    )
    case = forms.CharField(
        label="Reconciliation case", required=False, help_text="Optional: the case it fixes, rec_…"
    )

    def clean_user(self) -> MarketplaceUser:
        user = MarketplaceUser.objects.filter(public_id=self.cleaned_data["user"].strip()).first()
        if user is None:
            raise forms.ValidationError("No user has this id.")
        return user

    def clean_case(self) -> ReconciliationCase | None:
        public_id = self.cleaned_data["case"].strip()
        if not public_id:
            return None
        case = ReconciliationCase.objects.filter(public_id=public_id).first()
        if case is None:
            raise forms.ValidationError("No case has this id.")
        return case

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "amount" in data and "currency" in data:
            try:
                data["money"] = Money.parse(data["amount"], data["currency"])
            except DomainError as exc:
                self.add_error("amount", exc.message)
        return data
