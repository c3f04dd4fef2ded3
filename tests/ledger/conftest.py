"""Ledger fixtures. Money reaches a user only through ledger services, as in production."""

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

from ledger.models import Account
from ledger.money import Money
from ledger.services import Leg, entry_post, system_account, user_account
from orchestrator.models import MarketplaceUser

T = TypeVar("T")
CLEARING = "provider_clearing:airtm"


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def available(user: MarketplaceUser, currency: str = "USD") -> Account:
    return user_account(user=user, kind=Account.Kind.AVAILABLE, currency=currency)


def reserved(user: MarketplaceUser, currency: str = "USD") -> Account:
    return user_account(user=user, kind=Account.Kind.RESERVED, currency=currency)


def fund(user: MarketplaceUser, amount: Money, reference: str = "") -> None:
    """Credit the user's available balance from the Airtm clearing account, like a top-up."""
    clearing = system_account(
        marketplace_id=user.marketplace_id, code=CLEARING, currency=amount.currency
    )
    entry_post(
        marketplace_id=user.marketplace_id,
        reference=reference or f"test-fund:{user.public_id}:{amount.amount}",
        kind="topup",
        legs=[Leg.debit(clearing, amount), Leg.credit(available(user, amount.currency), amount)],
    )


def balance(account: Account) -> str:
    return format(Account.objects.get(pk=account.pk).balance.normalize(), "f")


def run_concurrently(fn: Callable[..., T], calls: Iterable[Any], workers: int = 32) -> list[Any]:
    """Run fn(*call) for every call on `workers` threads, each with its own DB connection.

    Returns each call's result or the exception it raised.
    """

    def one(call: Any) -> Any:
        try:
            return fn(*call)
        except Exception as exc:  # collected, asserted on by the test
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, list(calls)))
