"""The ledger entries of an order (DESIGN.md §3), through ledger.services only.

Each entry has a reference derived from the order, so whichever of the task, a retry or
the janitor confirms a fact first posts it, and the others get the same entry back:

- `hold:order:<ord>:place`           reserve: buyer.available -A, buyer.reserved +A
- `order:<ord>:cancel`               cancel:  buyer.reserved -A, buyer.available +A
- `order:<ord>:escrow_funded`        funded:  buyer.reserved -A, conversion:usd_usdc +A (USD)
- `order:<ord>:escrow_funded:usdc`            conversion:usd_usdc -A, escrow:<ord> +A (USDC)
- `order:<ord>:release[:<ref>]`      a release (per milestone for multi-release escrows)
- `order:<ord>:refund[:<ref>]`       a refund
- `order:<ord>:resolution[:<ref>]`   a dispute decision

A payout entry has one USDC leg per transfer the contract made (escrow out, Trustless Work
fee, platform fee, the payees' nets through the conversion account, rounding) and the
USD legs crediting the users. See escrow.fees for the amounts and their rounding.
"""

from collections import defaultdict
from decimal import Decimal

from django.conf import settings

from escrow.fees import STROOPS_PER_CENT, Payout, Share, to_stroops, usd_nearest_cent, usdc
from escrow.models import Order
from ledger.models import Account, Hold
from ledger.money import Money
from ledger.services import (
    Leg,
    entry_post,
    hold_capture,
    hold_place,
    hold_void,
    system_account,
    user_account,
)
from orchestrator.models import MarketplaceUser

CONVERSION = "conversion:usd_usdc"
PLATFORM_FEES = "platform_fees"
TW_FEES = "provider_fees:trustless_work"
ROUNDING = "rounding:trustless_work"


def escrow_account(order: Order) -> Account:
    return system_account(
        marketplace_id=order.marketplace_id, code=f"escrow:{order.public_id}", currency="USDC"
    )


def _system(order: Order, code: str, currency: str) -> Account:
    return system_account(marketplace_id=order.marketplace_id, code=code, currency=currency)


def reserve(order: Order) -> Hold:
    """Hold the order's amount in the buyer's balance (InsufficientFundsError: 422)."""
    return hold_place(user=order.buyer, amount=order.money, reference=f"order:{order.public_id}")


def release_reservation(order: Order) -> None:
    if order.hold is not None:
        hold_void(hold=order.hold, reference=f"order:{order.public_id}:cancel")


def move_into_escrow(order: Order) -> None:
    """The escrow is funded: the buyer's reservation becomes the escrow's USDC."""
    if order.hold is None:
        raise ValueError(f"order {order.public_id} has no reservation")
    hold_capture(
        hold=order.hold,
        destination=_system(order, CONVERSION, order.currency),
        reference=f"order:{order.public_id}:escrow_funded",
    )
    amount = Money(order.money.amount, "USDC")
    entry_post(
        marketplace_id=order.marketplace_id,
        reference=f"order:{order.public_id}:escrow_funded:usdc",
        kind="escrow.funded",
        legs=[
            Leg.debit(_system(order, CONVERSION, "USDC"), amount),
            Leg.credit(escrow_account(order), amount),
        ],
        metadata={"order_id": order.public_id, "usd": order.money.text()},
    )


def _platform_bears_fees(share: Share) -> bool:
    return share.party == "buyer" and settings.ESCROW_REFUND_FEES == "platform"


def share_credit(share: Share) -> Money:
    """What a party's balance is credited for a share the contract paid out (USD).

    A buyer's refunded share comes back whole when the platform bears refund fees
    (ESCROW_REFUND_FEES); otherwise the party gets the contract's net to the nearest cent.
    """
    if _platform_bears_fees(share):
        if share.gross % STROOPS_PER_CENT:
            raise ValueError("a refund distribution must be whole cents")
        return Money(Decimal(share.gross).scaleb(-7).quantize(Decimal("0.01")), "USD")
    return usd_nearest_cent(share.net)


def pay_out(
    order: Order, payout: Payout, *, reference: str, kind: str, memo: str = ""
) -> dict[str, Money]:
    """Post what the contract paid out of the order's escrow; returns each party's USD credit.

    Raises:
        InsufficientFundsError: never in practice (only credits to users).
    """
    chain: dict[Account, int] = defaultdict(int)  # USDC legs, in stroops
    chain[escrow_account(order)] -= payout.total
    chain[_system(order, TW_FEES, "USDC")] += payout.tw_fee
    chain[_system(order, PLATFORM_FEES, "USDC")] += payout.platform_fee
    credits: dict[str, Money] = {}
    users: dict[str, MarketplaceUser] = {"seller": order.seller, "buyer": order.buyer}
    for share in payout.shares:
        credit = share_credit(share)
        if _platform_bears_fees(share):
            chain[_system(order, PLATFORM_FEES, "USDC")] -= share.gross - share.net
        else:
            chain[_system(order, ROUNDING, "USDC")] += share.net - to_stroops(credit.amount)
        chain[_system(order, CONVERSION, "USDC")] += to_stroops(credit.amount)
        credits[share.party] = credits.get(share.party, Money.zero("USD")) + credit
    legs = [Leg(account, usdc(stroops).amount) for account, stroops in chain.items() if stroops]
    paid = sum((c.amount for c in credits.values()), Decimal(0))
    if paid:
        legs.append(Leg(_system(order, CONVERSION, "USD"), -paid))
    for party, credit in credits.items():
        if credit.amount:
            account = user_account(
                user=users[party], kind=Account.Kind.AVAILABLE, currency=credit.currency
            )
            legs.append(Leg(account, credit.amount))
    entry_post(
        marketplace_id=order.marketplace_id,
        reference=reference,
        kind=kind,
        legs=legs,
        memo=memo,
        metadata={
            "order_id": order.public_id,
            **payout.as_metadata(),
            "credits": {party: credit.text() for party, credit in credits.items()},
            "refund_fees": settings.ESCROW_REFUND_FEES,
        },
    )
    return credits
