"""Ledger reads: balances and statements, always scoped by the caller's marketplace."""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum

from ledger.models import Account, AccountShard, JournalEntry, Posting
from ledger.money import EXPONENTS, Money
from orchestrator.models import MarketplaceUser
from orchestrator.selectors import filtered

USER_KINDS = (Account.Kind.AVAILABLE, Account.Kind.RESERVED, Account.Kind.WITHDRAWAL_PENDING)


def available_balance(*, account: Account) -> Money:
    """The account's current balance, read from the database (shards summed if unbounded)."""
    if account.is_bounded:
        value = Account.objects.values_list("balance", flat=True).get(pk=account.pk)
    else:
        value = AccountShard.objects.filter(account=account).aggregate(total=Sum("balance"))[
            "total"
        ]
    return Money(
        (value or Decimal(0)).quantize(Money.zero(account.currency).unit), account.currency
    )


def user_balances(*, user: MarketplaceUser) -> list[dict[str, Any]]:
    """Per currency the user holds: available, reserved, withdrawal_pending and total.

    A user with no account yet shows zero USD.
    """
    by_currency: dict[str, dict[str, Decimal]] = {}
    for kind, currency, balance in Account.objects.filter(user=user).values_list(
        "kind", "currency", "balance"
    ):
        by_currency.setdefault(currency, {k: Decimal(0) for k in USER_KINDS})[kind] = balance
    if not by_currency:
        by_currency["USD"] = {k: Decimal(0) for k in USER_KINDS}
    rows = []
    for currency in sorted(by_currency, key=list(EXPONENTS).index):
        amounts = by_currency[currency]
        row: dict[str, Any] = {"currency": currency}
        for kind in USER_KINDS:
            row[str(kind)] = Money(amounts[kind], currency).text()
        row["total"] = Money(sum(amounts.values(), Decimal(0)), currency).text()
        rows.append(row)
    return rows


def user_statement(
    *,
    user: MarketplaceUser,
    kind: str | None = None,
    account: str | None = None,
    currency: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Posting]:
    """The user's postings, newest first, with their entries."""
    # By account ids, not through the join: the (account, -id) index then serves the page.
    accounts = list(Account.objects.filter(user=user).values_list("pk", flat=True))
    return filtered(
        Posting.objects.filter(account_id__in=accounts).select_related("entry", "account"),
        entry__kind=kind,
        account__kind=account,
        currency=currency,
        entry__created_at__gte=created_after,
        entry__created_at__lt=created_before,
    )


def posted_references(*, references: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of the (marketplace id, reference) pairs name a posted entry."""
    by_marketplace: dict[int, set[str]] = defaultdict(set)
    for marketplace_id, reference in references:
        by_marketplace[marketplace_id].add(reference)
    found: set[tuple[int, str]] = set()
    for marketplace_id, refs in by_marketplace.items():
        found.update(
            (marketplace_id, ref)
            for ref in JournalEntry.objects.filter(
                marketplace_id=marketplace_id, reference__in=refs
            ).values_list("reference", flat=True)
        )
    return found


def system_balances(*, code_prefix: str, currency: str) -> dict[tuple[int, str], Decimal]:
    """The balances of the system accounts whose code starts with `code_prefix`, by
    (marketplace id, code)."""
    rows = (
        AccountShard.objects.filter(
            account__code__startswith=code_prefix, account__currency=currency
        )
        .values("account__marketplace_id", "account__code")
        .annotate(total=Sum("balance"))
        .values_list("account__marketplace_id", "account__code", "total")
    )
    return {(mkt, code): total for mkt, code, total in rows}


# --- Back-office: statements and exports ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One posting on a user's statement, with the account's balance right after it."""

    at: datetime
    entry_id: str
    kind: str  # the entry's kind: "topup.succeeded", "hold.place", "adjustment.credit", ...
    reference: str
    account: str  # available, reserved or withdrawal_pending
    amount: Money  # signed: positive in, negative out
    balance_after: Money
    memo: str


def statement_openings(*, user: MarketplaceUser, before: datetime) -> dict[tuple[str, str], Money]:
    """Each of the user's accounts' balance just before `before`, by (account kind, currency)."""
    rows = (
        Posting.objects.filter(account__user=user, entry__created_at__lt=before)
        .values("account__kind", "currency")
        .annotate(total=Sum("amount"))
        .values_list("account__kind", "currency", "total")
    )
    totals = {(kind, currency): total for kind, currency, total in rows}
    return {
        (kind, currency): Money(totals.get((kind, currency), Decimal(0)), currency)
        for kind, currency in Account.objects.filter(user=user).values_list("kind", "currency")
    }


def statement_lines(
    *, user: MarketplaceUser, start: datetime, end: datetime
) -> Iterator[StatementLine]:
    """The user's postings in [start, end), oldest first, each with its running balance."""
    balances = statement_openings(user=user, before=start)
    postings = (
        Posting.objects.filter(
            account__user=user, entry__created_at__gte=start, entry__created_at__lt=end
        )
        .select_related("entry", "account")
        .order_by("entry__created_at", "id")
    )
    for posting in postings.iterator(chunk_size=1000):
        key = (posting.account.kind, posting.currency)
        balance = balances.get(key, Money.zero(posting.currency)) + posting.money
        balances[key] = balance
        yield StatementLine(
            at=posting.entry.created_at,
            entry_id=posting.entry.public_id,
            kind=posting.entry.kind,
            reference=posting.entry.reference,
            account=posting.account.kind,
            amount=posting.money,
            balance_after=balance,
            memo=posting.entry.memo,
        )


def entry_postings(
    *, start: datetime, end: datetime, marketplace_id: int | None = None
) -> QuerySet[Posting]:
    """Every posting of the entries made in [start, end), oldest entry first (ledger export)."""
    postings = Posting.objects.filter(entry__created_at__gte=start, entry__created_at__lt=end)
    if marketplace_id is not None:
        postings = postings.filter(entry__marketplace_id=marketplace_id)
    return postings.select_related("entry", "account", "entry__marketplace").order_by(
        "entry__created_at", "entry_id", "id"
    )
