"""Helpers for provider tests: balances as the API shows them, funding, ledger checks."""

from datetime import timedelta

from django.utils import timezone

from ledger.integrity import ledger_verify
from ledger.models import Account
from ledger.money import Money
from ledger.services import Leg, entry_post, system_account, user_account
from orchestrator.models import MarketplaceUser
from providers.models import TopUp, Withdrawal

CLEARING = "provider_clearing:airtm"


def balance(user: MarketplaceUser, currency: str = "USD") -> dict[str, str]:
    """The user's accounts in `currency` that exist, kind -> amount at the currency's scale."""
    return {
        account.kind: Money(account.balance, currency).text()
        for account in Account.objects.filter(user=user, currency=currency).order_by("kind")
    }


def fund(user: MarketplaceUser, amount: str, currency: str = "USD") -> None:
    """Credit available from the Airtm clearing account, as a succeeded top-up does."""
    money = Money.of(amount, currency)
    clearing = system_account(marketplace_id=user.marketplace_id, code=CLEARING, currency=currency)
    entry_post(
        marketplace_id=user.marketplace_id,
        reference=f"test-fund:{user.public_id}:{amount}",
        kind="topup",
        legs=[
            Leg.debit(clearing, money),
            Leg.credit(
                user_account(user=user, kind=Account.Kind.AVAILABLE, currency=currency), money
            ),
        ],
    )


def ledger_ok() -> bool:
    report = ledger_verify()
    assert report.ok, report.problems
    return True


def quiet(model: type[TopUp] | type[Withdrawal], public_id: str, hours: int = 1) -> None:
    """Make an object look untouched for `hours`, so the janitor considers it now."""
    then = timezone.now() - timedelta(hours=hours)
    model.objects.filter(public_id=public_id).update(updated_at=then, created_at=then)
