"""Ledger writes: the only code that changes a balance.

Every function posts whole, balanced journal entries inside one transaction and is safe to
retry: each takes a business `reference`, unique per marketplace, and a second call with the
same reference returns the first result without moving money again.

Locking: bounded (user) accounts are locked with SELECT ... FOR UPDATE in ascending id
order, so two entries over the same accounts queue instead of deadlocking, and the funds
check happens under the lock. Unbounded system accounts are never locked; each entry adds
to one of their shard rows with an atomic increment, on PostgreSQL one that no concurrent
entry holds (SKIP LOCKED), so a busy clearing or fee account is not a queue every payment
waits in. The statements themselves are in ledger.sql.
"""

import secrets
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger.errors import (
    HoldAmountError,
    HoldNotActiveError,
    InsufficientFundsError,
    ReferenceReusedError,
    UnbalancedEntryError,
)
from ledger.models import SHARDS, Account, AccountShard, Hold, JournalEntry
from ledger.money import Money
from ledger.selectors import available_balance
from ledger.sql import Outcome, post_entry, posts_in_one_statement
from orchestrator.audit import audit_record
from orchestrator.errors import ValidationFailedError
from orchestrator.events import (
    DomainEvent,
    domain_event,
    notify_receivers,
    outbox_record,
    publish,
)
from orchestrator.ids import new_public_id
from orchestrator.models import AuditLog, MarketplaceUser


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of an entry: a signed amount on an account (positive in, negative out)."""

    account: Account
    amount: Decimal

    @classmethod
    def credit(cls, account: Account, money: Money) -> "Leg":
        return cls(account, money.amount)

    @classmethod
    def debit(cls, account: Account, money: Money) -> "Leg":
        return cls(account, -money.amount)


@dataclass(frozen=True, kw_only=True)
class BalanceUpdated(DomainEvent):
    """Balances of one or more users changed by one journal entry."""

    type = "balance.updated"
    aggregate_type = "ledger_entry"

    reference: str
    kind: str
    changes: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class EntryPosted(DomainEvent):
    """An entry between system accounts only (no user balance changed)."""

    type = "ledger.entry_posted"
    aggregate_type = "ledger_entry"

    reference: str
    kind: str


# --- Accounts ---------------------------------------------------------------------------------


def user_account(*, user: MarketplaceUser, kind: str, currency: str) -> Account:
    """The user's account of `kind` in `currency`, created on first use."""
    if kind == Account.Kind.SYSTEM:
        raise ValueError("user accounts are available, reserved or withdrawal_pending")
    Money.zero(currency)  # refuses unknown currencies
    lookup = {
        "marketplace_id": user.marketplace_id,
        "user": user,
        "kind": kind,
        "currency": currency,
    }
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(**lookup, user_public_id=user.public_id)
    except IntegrityError:  # created concurrently
        return Account.objects.get(**lookup)


def system_account(*, marketplace_id: int, code: str, currency: str) -> Account:
    """The marketplace's system account `code` (e.g. "provider_clearing:airtm"), unbounded."""
    Money.zero(currency)
    lookup = {"marketplace_id": marketplace_id, "user": None, "code": code, "currency": currency}
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            account = Account.objects.create(
                **lookup, kind=Account.Kind.SYSTEM, allow_negative=True
            )
            AccountShard.objects.bulk_create(
                AccountShard(account=account, shard=n) for n in range(SHARDS)
            )
            return account
    except IntegrityError:
        return Account.objects.get(**lookup)


# --- Entries ----------------------------------------------------------------------------------


def entry_post(
    *,
    marketplace_id: int,
    reference: str,
    kind: str,
    legs: Sequence[Leg],
    memo: str = "",
    metadata: dict[str, Any] | None = None,
) -> JournalEntry:
    """Post one balanced entry. Returns the existing entry if `reference` was posted before.

    Runs in the caller's transaction if one is open; otherwise it is a transaction of its own.

    Raises:
        UnbalancedEntryError: fewer than 2 legs, a zero leg, legs not summing to zero per
            currency, or an account of another marketplace or currency.
        InsufficientFundsError: a bounded account would go below zero.
        ReferenceReusedError: `reference` names an earlier entry with other postings.
    """
    entry, outcome = _entry_write(
        marketplace_id=marketplace_id,
        reference=reference,
        kind=kind,
        legs=legs,
        memo=memo,
        metadata=metadata,
    )
    return _entry_result(entry, outcome, legs)


def _entry_write(
    *,
    marketplace_id: int,
    reference: str,
    kind: str,
    legs: Sequence[Leg],
    memo: str = "",
    metadata: dict[str, Any] | None = None,
) -> tuple[JournalEntry, Outcome]:
    """Write the entry unless its reference exists or funds are short; raises only for legs
    that are wrong in themselves (UnbalancedEntryError), so a caller holding a transaction
    without a savepoint can act on the outcome."""
    _check_legs(marketplace_id, legs)
    entry = JournalEntry(
        public_id=new_public_id("je_"),
        marketplace_id=marketplace_id,
        reference=reference,
        kind=kind,
        memo=memo,
        metadata=metadata or {},
    )
    event = _entry_event(entry, legs)
    record = outbox_record(event)
    # On PostgreSQL the posting is one statement, a transaction by itself when the caller
    # has none open: BEGIN and COMMIT would be two more round trips. Receivers of the
    # domain event must run inside that transaction, so one is opened when any listens.
    needs_transaction = not posts_in_one_statement() or domain_event.has_listeners()
    with transaction.atomic() if needs_transaction else nullcontext():
        outcome = post_entry(entry, legs, record)
        if outcome.status == "posted":
            notify_receivers(event, record)
    return entry, outcome


def _entry_result(entry: JournalEntry, outcome: Outcome, legs: Sequence[Leg]) -> JournalEntry:
    """The posted entry, or the earlier one with its reference; InsufficientFundsError."""
    if outcome.status == "exists":  # posted before (possibly by a concurrent call we waited for)
        return _existing_entry(entry.marketplace_id, entry.reference, legs)
    if outcome.status == "short":
        account = next(leg.account for leg in legs if leg.account.pk == outcome.short_account)
        requested = -sum((leg.amount for leg in legs if leg.account.pk == account.pk), Decimal(0))
        raise InsufficientFundsError(
            "Not enough available funds.",
            account_id=account.public_id,
            available=Money(outcome.short_balance or Decimal(0), account.currency).text(),
            requested=Money(requested, account.currency).text(),
            currency=account.currency,
        )
    _schedule_seal()
    return entry


def transfer_post(
    *,
    source: Account,
    destination: Account,
    amount: Money,
    reference: str,
    kind: str = "transfer",
    memo: str = "",
) -> JournalEntry:
    """Move `amount` from `source` to `destination` as one entry (see entry_post)."""
    return entry_post(
        marketplace_id=source.marketplace_id,
        reference=reference,
        kind=kind,
        legs=[Leg.debit(source, amount), Leg.credit(destination, amount)],
        memo=memo,
    )


def _check_legs(marketplace_id: int, legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise UnbalancedEntryError("An entry needs at least two postings.")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for leg in legs:
        if leg.amount == 0 or not leg.amount.is_finite():
            raise UnbalancedEntryError("A posting moves a non-zero amount.")
        if leg.account.marketplace_id != marketplace_id:
            raise UnbalancedEntryError("Every account must belong to the entry's marketplace.")
        Money(abs(leg.amount), leg.account.currency)  # refuses extra decimals for the currency
        totals[leg.account.currency] += leg.amount
    if any(total != 0 for total in totals.values()):
        raise UnbalancedEntryError("Postings must sum to zero in each currency.")


def _existing_entry(marketplace_id: int, reference: str, legs: Sequence[Leg]) -> JournalEntry:
    entry = JournalEntry.objects.get(marketplace_id=marketplace_id, reference=reference)
    posted = sorted(entry.postings.values_list("account_id", "amount"))
    asked = sorted((leg.account.pk, leg.amount) for leg in legs)
    if posted != asked:
        raise ReferenceReusedError(
            "This reference was already used for different postings.", reference=reference
        )
    return entry


def _entry_event(entry: JournalEntry, legs: Sequence[Leg]) -> DomainEvent:
    user_legs = [leg for leg in legs if leg.account.user_public_id]
    if not user_legs:
        return EntryPosted(
            marketplace_id=entry.marketplace_id,
            aggregate_id=entry.public_id,
            reference=entry.reference,
            kind=entry.kind,
        )
    changes = [
        {
            "user_id": leg.account.user_public_id,
            "account": leg.account.kind,
            "amount": Money(leg.amount, leg.account.currency).text(),
            "currency": leg.account.currency,
        }
        for leg in user_legs
    ]
    users = tuple(dict.fromkeys(leg.account.user_public_id for leg in user_legs))
    return BalanceUpdated(
        marketplace_id=entry.marketplace_id,
        aggregate_id=entry.public_id,
        reference=entry.reference,
        kind=entry.kind,
        user_ids=users,
        changes=changes,
    )


def _schedule_seal() -> None:
    from ledger.tasks import schedule_seal  # ledger.tasks imports this module

    transaction.on_commit(schedule_seal)


def new_reference(prefix: str) -> str:
    """A fresh reference for a one-off entry (e.g. a manual adjustment without one)."""
    return f"{prefix}:{secrets.token_hex(12)}"


# --- Holds ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HoldEvent(DomainEvent):
    aggregate_type = "hold"

    amount: Money
    reference: str


@dataclass(frozen=True, kw_only=True)
class HoldPlaced(HoldEvent):
    type = "hold.placed"


@dataclass(frozen=True, kw_only=True)
class HoldCaptured(HoldEvent):
    type = "hold.captured"

    captured: Money


@dataclass(frozen=True, kw_only=True)
class HoldVoided(HoldEvent):
    type = "hold.voided"


@dataclass(frozen=True, kw_only=True)
class HoldExpired(HoldEvent):
    type = "hold.expired"


def hold_place(
    *, user: MarketplaceUser, amount: Money, reference: str, expires_at: datetime | None = None
) -> Hold:
    """Reserve `amount` of the user's available funds (available -> reserved).

    Raises:
        InsufficientFundsError: not enough available.
        ReferenceReusedError: `reference` names another hold.
    """
    existing = Hold.objects.filter(marketplace_id=user.marketplace_id, reference=reference).first()
    if existing is not None:
        return _same_hold(existing, user, amount)
    available, reserved = _user_accounts(user, amount.currency)
    legs = [Leg.debit(available, amount), Leg.credit(reserved, amount)]
    # No savepoint: nothing in this block raises for a short balance or an existing entry
    # (the outcome says so, and the errors are raised after it), so the caller's transaction
    # stays usable whatever happens, at two round trips less than a savepoint.
    with transaction.atomic(savepoint=False):
        entry, outcome = _entry_write(
            marketplace_id=user.marketplace_id,
            reference=f"hold:{reference}:place",
            kind="hold.place",
            legs=legs,
        )
        hold = None
        if outcome.status == "posted":
            # The entry's reference is the hold's, and it was new: no other call can be
            # placing this hold, so the insert cannot collide.
            hold = Hold.objects.create(
                marketplace_id=user.marketplace_id,
                user=user,
                reference=reference,
                amount=amount.amount,
                currency=amount.currency,
                expires_at=expires_at,
                place_entry=entry,
            )
            publish(HoldPlaced(**_hold_event_fields(hold)))
    placed = _entry_result(entry, outcome, legs)  # raises InsufficientFundsError
    if hold is None:  # placed before, by an earlier or a concurrent call we waited for
        hold = Hold.objects.get(marketplace_id=user.marketplace_id, place_entry=placed)
        return _same_hold(hold, user, amount)
    return hold


def _user_accounts(user: MarketplaceUser, currency: str) -> tuple[Account, Account]:
    """The user's available and reserved accounts in `currency` (one query once both exist)."""
    kinds = (Account.Kind.AVAILABLE, Account.Kind.RESERVED)
    found = {
        a.kind: a
        for a in Account.objects.filter(
            marketplace_id=user.marketplace_id, user=user, currency=currency, kind__in=kinds
        )
    }
    available, reserved = (
        found.get(kind) or user_account(user=user, kind=kind, currency=currency) for kind in kinds
    )
    return available, reserved


def hold_capture(
    *, hold: Hold, destination: Account, reference: str, amount: Money | None = None
) -> Hold:
    """Move `amount` (default: all) of a hold to `destination`; the rest returns to available.

    Retrying with the same `reference` returns the captured hold.

    Raises:
        HoldNotActiveError: the hold was resolved before (by another reference).
        HoldAmountError: `amount` exceeds the hold.
    """
    with transaction.atomic():
        hold = (
            Hold.objects.select_for_update(of=("self",))
            .select_related("user", "resolve_entry")
            .get(pk=hold.pk)
        )
        captured = amount or hold.money
        if hold.status != Hold.Status.ACTIVE:
            return _already_resolved(hold, reference, Hold.Status.CAPTURED)
        if (
            captured.currency != hold.currency
            or not Money.zero(hold.currency) < captured <= hold.money
        ):
            raise HoldAmountError(
                "Capture must be more than zero and at most the held amount.",
                held=hold.money.text(),
                requested=captured.text(),
            )
        available, reserved = _hold_accounts(hold)
        remainder = hold.money - captured
        legs = [Leg.debit(reserved, hold.money), Leg.credit(destination, captured)]
        if remainder.amount:
            legs.append(Leg.credit(available, remainder))
        entry = entry_post(
            marketplace_id=hold.marketplace_id, reference=reference, kind="hold.capture", legs=legs
        )
        _resolve(hold, Hold.Status.CAPTURED, entry, captured=captured.amount)
        publish(HoldCaptured(**_hold_event_fields(hold), captured=captured))
        return hold


def hold_void(*, hold: Hold, reference: str) -> Hold:
    """Return a hold's whole amount to available. Retrying with the same reference is a no-op.

    Raises:
        HoldNotActiveError: the hold was resolved before (by another reference).
    """
    return _hold_release(hold=hold, reference=reference, status=Hold.Status.VOIDED)


def hold_expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire active holds whose time has passed; returns how many this call expired.

    Safe to run concurrently: rows another sweeper holds are skipped, and a hold that was
    resolved meanwhile is left alone (each hold expires at most once).
    """
    now = now or timezone.now()
    due = list(
        Hold.objects.filter(status=Hold.Status.ACTIVE, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    expired = 0
    for pk in due:
        with transaction.atomic():
            hold = Hold.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if hold is None or hold.status != Hold.Status.ACTIVE:
                continue
            _hold_release(
                hold=hold, reference=f"hold:{hold.public_id}:expire", status=Hold.Status.EXPIRED
            )
            expired += 1
    return expired


def _hold_release(*, hold: Hold, reference: str, status: str) -> Hold:
    with transaction.atomic():
        hold = (
            Hold.objects.select_for_update(of=("self",))
            .select_related("user", "resolve_entry")
            .get(pk=hold.pk)
        )
        if hold.status != Hold.Status.ACTIVE:
            return _already_resolved(hold, reference, status)
        available, reserved = _hold_accounts(hold)
        entry = entry_post(
            marketplace_id=hold.marketplace_id,
            reference=reference,
            kind=f"hold.{status.lower()}",
            legs=[Leg.debit(reserved, hold.money), Leg.credit(available, hold.money)],
        )
        _resolve(hold, status, entry)
        event = HoldExpired if status == Hold.Status.EXPIRED else HoldVoided
        publish(event(**_hold_event_fields(hold)))
        return hold


def _hold_accounts(hold: Hold) -> tuple[Account, Account]:
    return _user_accounts(hold.user, hold.currency)


def _resolve(hold: Hold, status: str, entry: JournalEntry, captured: Decimal = Decimal(0)) -> None:
    hold.status = status
    hold.captured_amount = captured
    hold.resolve_entry = entry
    hold.resolved_at = timezone.now()
    hold.save(update_fields=["status", "captured_amount", "resolve_entry", "resolved_at"])


def _already_resolved(hold: Hold, reference: str, status: str) -> Hold:
    if hold.status == status and hold.resolve_entry and hold.resolve_entry.reference == reference:
        return hold  # a retry of the call that resolved it
    raise HoldNotActiveError(
        f"Hold is already {hold.status.lower()}.", hold_id=hold.public_id, status=hold.status
    )


def _same_hold(hold: Hold, user: MarketplaceUser, amount: Money) -> Hold:
    if hold.user_id != user.pk or hold.money != amount:
        raise ReferenceReusedError(
            "This reference was already used for a different hold.", reference=hold.reference
        )
    return hold


def _hold_event_fields(hold: Hold) -> dict[str, Any]:
    return {
        "marketplace_id": hold.marketplace_id,
        "aggregate_id": hold.public_id,
        "user_ids": (hold.user.public_id,),
        "amount": hold.money,
        "reference": hold.reference,
    }


# --- Manual adjustments -----------------------------------------------------------------------

ADJUSTMENTS = "adjustments"


def adjustment_post(
    *, user: MarketplaceUser, amount: Money, direction: str, reason: str, reference: str
) -> JournalEntry:
    """Credit or debit a user's available balance against the adjustments account, audited.

    Raises:
        InsufficientFundsError: a debit larger than the available balance.
        ReferenceReusedError: `reference` names another entry.
    """
    if direction not in ("credit", "debit"):
        raise ValueError("direction is 'credit' or 'debit'")
    if not reason.strip():
        raise ValidationFailedError("A reason is required.", fields={"reason": ["Required."]})
    with transaction.atomic():
        available = user_account(user=user, kind=Account.Kind.AVAILABLE, currency=amount.currency)
        adjustments = system_account(
            marketplace_id=user.marketplace_id, code=ADJUSTMENTS, currency=amount.currency
        )
        source, destination = (
            (adjustments, available) if direction == "credit" else (available, adjustments)
        )
        before = available_balance(account=available)
        entry = entry_post(
            marketplace_id=user.marketplace_id,
            reference=reference,
            kind=f"adjustment.{direction}",
            legs=[Leg.debit(source, amount), Leg.credit(destination, amount)],
            memo=reason[:500],
        )
        if not AuditLog.objects.filter(
            object_type="ledger_entry", object_id=entry.public_id, action=f"balance.{direction}"
        ).exists():
            audit_record(
                action=f"balance.{direction}",
                object_type="ledger_entry",
                object_id=entry.public_id,
                marketplace_id=user.marketplace_id,
                before={
                    "user_id": user.public_id,
                    "available": before.text(),
                    "currency": amount.currency,
                },
                after={
                    "user_id": user.public_id,
                    "available": available_balance(account=available).text(),
                    "amount": amount.text(),
                    "reference": reference,
                },
                reason=reason,
            )
        return entry
