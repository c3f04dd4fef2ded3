"""How an order's dollars become USDC on chain, and how the contract's payouts come back.

The mapping, and why (a payments reviewer's questions first):

- Orders are in USD, with cents. The escrow holds the same number of USDC (1 USD = 1 USDC,
  7 decimals on Stellar): a 120.00 USD order is a 120.0000000 USDC escrow.
- The contract takes its fees at release or resolution, in stroops (1e-7 USDC), exactly as
  Trustless Work's contract does (mirrored here and checked against the simulator):
  Trustless Work's fee is `amount * 30 // 10000`, the platform's `amount * bps // 10000`,
  and a dispute resolution charges each payee `share * fees // total`. For whole-cent
  amounts and whole-bps fees these divisions are exact, so fees are exact too; they are
  just finer than a cent (0.3 % of 12.34 is 0.03702).
- The ledger therefore books the chain side in USDC, to the stroop: `escrow:<order>`,
  `platform_fees`, `provider_fees:trustless_work` and `rounding:trustless_work` are USDC
  accounts, and every payout entry has one USDC leg per transfer the contract made.
- Users' balances stay in USD cents (that is what they top up and withdraw through Airtm).
  Dollars cross to the chain side through `conversion:usd_usdc`, an account held in both
  currencies that converts 1:1 and only whole cents: at funding the buyer's reserved
  dollars go in and the escrow's USDC come out; at payout the reverse. Its USD and USDC
  balances always cancel out.
- When a payee's net is not whole cents (12.30298 USDC paid to the seller's wallet), the
  user is credited the nearest cent (half to even: no side is favoured on average) and
  the difference, under half a cent, is booked to `rounding:trustless_work` (a platform
  account, positive or negative). Nothing is rounded silently; every entry's metadata
  keeps the contract's stroops.
- Refunds (and the buyer's part of a split): the contract charges fees on them too. With
  ESCROW_REFUND_FEES = "platform" (the default) the buyer gets back exactly what they paid
  and `platform_fees` bears the fees of the refunded part; with "buyer" the buyer bears
  them like a seller does.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from ledger.money import Money

STROOPS_PER_USDC = 10_000_000
STROOPS_PER_CENT = 100_000
TW_FEE_BPS = 30  # Trustless Work's protocol fee, a contract constant
BPS = 10_000
MAX_PLATFORM_FEE_BPS = 9_900  # the contract refuses more than 99 %


class NotSettleableError(ValueError):
    """The contract would fail this payout (its rounded fee shares exceed the balance)."""


def to_stroops(amount: Decimal) -> int:
    """A USD or USDC amount as stroops, exactly (refuses more than 7 decimals)."""
    scaled = amount * STROOPS_PER_USDC
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals")
    return int(scaled)


def usdc(stroops: int) -> Money:
    return Money(Decimal(stroops).scaleb(-7), "USDC")


def usd_nearest_cent(stroops: int) -> Money:
    """The nearest whole cent (half to even) of a stroop amount, as USD."""
    cents = (Decimal(stroops) / STROOPS_PER_CENT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return Money(cents.scaleb(-2), "USD")


def platform_fee_percent(bps: int) -> Decimal:
    """Trustless Work's `platformFee` (a percentage) for a fee in basis points."""
    if not 0 <= bps <= MAX_PLATFORM_FEE_BPS:
        raise ValueError(f"platform fee of {bps} bps is outside 0..{MAX_PLATFORM_FEE_BPS}")
    return (Decimal(bps) / 100).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Share:
    party: str  # "seller" or "buyer"
    gross: int  # stroops distributed to the party before fees
    net: int  # stroops the contract transfers to the party's address


@dataclass(frozen=True)
class Payout:
    """What one release or resolution moves out of the escrow, in stroops."""

    total: int  # out of the escrow
    tw_fee: int
    platform_fee: int
    shares: tuple[Share, ...]

    def as_metadata(self) -> dict[str, object]:
        return {
            "stroops": {
                "total": self.total,
                "trustless_work_fee": self.tw_fee,
                "platform_fee": self.platform_fee,
                **{f"{s.party}_net": s.net for s in self.shares},
            }
        }


def release_payout(amount: int, platform_fee_bps: int) -> Payout:
    """A release of `amount` stroops (the escrow's or one milestone's): the contract's
    release_funds / release_milestone_funds."""
    tw_fee = amount * TW_FEE_BPS // BPS
    platform_fee = amount * platform_fee_bps // BPS
    net = amount - tw_fee - platform_fee
    return Payout(amount, tw_fee, platform_fee, (Share("seller", amount, net),))


def resolution_payout(distributions: list[tuple[str, int]], platform_fee_bps: int) -> Payout:
    """A dispute resolution paying `distributions` (party, stroops): the contract's
    resolve_dispute / resolve_milestone_dispute. Fees are taken on the total and charged
    to each distribution pro rata, each share rounded down.

    Raises:
        NotSettleableError: the rounded shares would pay out more than the total, which
            makes the contract's last transfer (and the whole call) fail.
    """
    if not distributions or any(amount <= 0 for _, amount in distributions):
        raise ValueError("distributions must be positive")
    total = sum(amount for _, amount in distributions)
    tw_fee = total * TW_FEE_BPS // BPS
    platform_fee = total * platform_fee_bps // BPS
    fees = tw_fee + platform_fee
    shares = tuple(
        Share(party, amount, amount - amount * fees // total) for party, amount in distributions
    )
    if tw_fee + platform_fee + sum(s.net for s in shares) > total:
        raise NotSettleableError(
            f"fee shares of {distributions} do not divide evenly; the contract would fail"
        )
    return Payout(total, tw_fee, platform_fee, shares)
