from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import CurrencyMismatchError, InvalidAmountError, InvalidCurrencyError
from ledger.money import Money


@pytest.mark.parametrize(
    "amount",
    [
        12.5,
        12,
        None,
        True,
        "NaN",
        "nan",
        "Infinity",
        "1e3",
        "1E3",
        "-1.00",
        "+1.00",
        "0",
        "0.00",
        "1.001",
        " 1.00",
        "1.00 ",
        "1,000.00",
        "",
        ".5",
        "5.",
        "0x10",
        "01.00",
        "1000000000.01",
        "99999999999999",
    ],
)
def test_money_parse_refuses_anything_but_a_positive_decimal_string(amount):
    with pytest.raises(InvalidAmountError) as error:
        Money.parse(amount, "USD")

    assert error.value.code == "INVALID_AMOUNT_FORMAT"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("12.5", "USD", "12.50"),
        ("0.01", "USD", "0.01"),
        ("1000000000", "USD", "1000000000.00"),
        ("0.0000001", "USDC", "0.0000001"),
        ("7", "USDC", "7.0000000"),
    ],
)
def test_money_parse_accepts_amounts_within_the_currency_scale(amount, currency, text):
    assert Money.parse(amount, currency).text() == text


@pytest.mark.parametrize("currency", ["EUR", "usd", "", None, 1])
def test_money_parse_refuses_unknown_currencies(currency):
    with pytest.raises(InvalidCurrencyError):
        Money.parse("1.00", currency)


def test_money_refuses_floats_and_mixed_currencies():
    with pytest.raises(TypeError):
        Money.of(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(CurrencyMismatchError):
        Money.of("1", "USD") + Money.of("1", "USDC")


@given(
    cents=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=6).filter(any),
)
def test_money_allocate_parts_always_add_up_exactly(cents, weights):
    total = Money(Decimal(cents).scaleb(-2), "USD")

    parts = total.allocate(weights)

    assert sum((p.amount for p in parts), Decimal(0)) == total.amount
    assert all(p.amount >= 0 for p in parts)
    assert len(parts) == len(weights)
