"""The contract's fee maths as escrow.fees mirrors it, checked against the simulator's
contract rules, and the cent rounding of what users are credited."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from escrow.fees import (
    NotSettleableError,
    platform_fee_percent,
    release_payout,
    resolution_payout,
    to_stroops,
    usd_nearest_cent,
)
from providers.sandbox import tw_chain

cents = st.integers(min_value=1, max_value=10**11)
bps = st.integers(min_value=0, max_value=9_900)


def _chain(platform_fee_bps: int) -> tuple[tw_chain.Chain, tw_chain.Escrow]:
    chain = tw_chain.Chain(tw_fee_address="TW")
    escrow = tw_chain.Escrow(
        contract_id="C",
        kind=tw_chain.SINGLE,
        signer="P",
        engagement_id="e",
        title="t",
        description="d",
        roles={"platformAddress": "P", "receiver": "S"},
        amount=0,
        platform_fee_bps=platform_fee_bps,
        milestones=[],
        trustline_address="I",
        trustline_name="USDC",
    )
    return chain, escrow


@given(amount=cents, fee=bps)
def test_release_fees_are_the_contracts(amount, fee):
    stroops = amount * 100_000
    payout = release_payout(stroops, fee)

    tw_fee, platform_fee, rest = tw_chain.standard_fees(stroops, fee)

    assert (payout.tw_fee, payout.platform_fee, payout.shares[0].net) == (
        tw_fee,
        platform_fee,
        rest,
    )
    assert payout.tw_fee + payout.platform_fee + payout.shares[0].net == stroops


@given(seller=cents, buyer=cents, fee=bps)
def test_whole_cent_splits_are_what_the_contract_pays_and_always_settle(seller, buyer, fee):
    distributions = [("seller", seller * 100_000), ("buyer", buyer * 100_000)]
    chain, escrow = _chain(fee)
    call = tw_chain.Call(
        op="resolve_dispute",
        contract_id="C",
        kind=tw_chain.SINGLE,
        signer="R",
        distributions=(("S", distributions[0][1]), ("B", distributions[1][1])),
    )

    payout = resolution_payout(distributions, fee)
    paid = tw_chain.distribution_payouts(chain, escrow, call)

    assert [payout.tw_fee, payout.platform_fee, *(s.net for s in payout.shares)] == [
        stroops for _, stroops in paid
    ]
    assert sum(stroops for _, stroops in paid) == payout.total


def test_a_split_the_contract_would_fail_is_refused():
    # 1 and 2 stroops with a 0.3 % fee on 3: shares round down, nets exceed the total.
    with pytest.raises(NotSettleableError):
        resolution_payout([("seller", 1_000_001), ("buyer", 2_000_001)], 9_000)


@pytest.mark.parametrize(
    ("stroops", "usd"),
    [
        (119_944_800, "11.99"),
        (119_950_000, "12.00"),  # half a cent: to the even cent
        (119_850_000, "11.98"),
        (119_850_001, "11.99"),
        (100_000, "0.01"),
    ],
)
def test_users_are_credited_the_nearest_cent(stroops, usd):
    assert usd_nearest_cent(stroops).text() == usd


def test_amounts_convert_exactly():
    assert to_stroops(Decimal("12.34")) == 123_400_000
    assert platform_fee_percent(250) == Decimal("2.50")
    with pytest.raises(ValueError, match="7 decimals"):
        to_stroops(Decimal("0.00000001"))
    with pytest.raises(ValueError, match="outside"):
        platform_fee_percent(9_901)
