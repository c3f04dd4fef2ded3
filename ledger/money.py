"""Money as an exact (amount, currency) pair.

Amounts are Decimals within the currency's precision. Nothing here rounds silently,
floats are refused, and mixing currencies raises instead of converting. The API speaks
amounts as decimal strings at the currency's scale ("500.00" USD, "1.0000000" USDC).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ledger.errors import CurrencyMismatchError, InvalidAmountError, InvalidCurrencyError

EXPONENTS = {"USD": 2, "USDC": 7}  # digits after the point; USDC on Stellar has 7

# Model fields: 19 digits, 7 after the point: holds any int64 count of stroops.
AMOUNT_MAX_DIGITS = 19
AMOUNT_DECIMAL_PLACES = 7
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)  # 0.0000001
# The largest amount one request may move: far above any real payment, far below overflow.
MAX_AMOUNT = Decimal("1000000000")

_AMOUNT_TEXT = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money needs a Decimal, not {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise InvalidAmountError("Amount must be a finite number.")
        if self.currency not in EXPONENTS:
            raise InvalidCurrencyError(
                f"Unknown currency {self.currency!r}.", currency=self.currency
            )
        if self.amount != self.amount.quantize(self.unit):
            raise InvalidAmountError(
                f"{self.amount} has more decimals than {self.currency} allows "
                f"({EXPONENTS[self.currency]}).",
            )

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> "Money":
        if isinstance(amount, float):
            raise TypeError("Money refuses floats.")
        return cls(Decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> "Money":
        return cls(Decimal(0), currency)

    @classmethod
    def parse(cls, amount: Any, currency: Any) -> "Money":
        """A positive amount from API input: a JSON string, at most the currency's places.

        Raises:
            InvalidCurrencyError: `currency` is not a known code.
            InvalidAmountError: not a string, or not a plain positive decimal (no sign,
                exponent, NaN, spaces), too many places, zero, or above MAX_AMOUNT.
        """
        if not isinstance(currency, str) or currency not in EXPONENTS:
            raise InvalidCurrencyError(
                f"Unknown currency {currency!r}; expected one of {', '.join(EXPONENTS)}.",
                currency=currency if isinstance(currency, str) else None,
            )
        places = EXPONENTS[currency]
        problem = f'Amount must be a string such as "12.50" with at most {places} decimals.'
        if not isinstance(amount, str) or not _AMOUNT_TEXT.match(amount):
            raise InvalidAmountError(problem, amount=amount if isinstance(amount, str) else None)
        fraction = amount.partition(".")[2]
        if len(fraction) > places:
            raise InvalidAmountError(problem, amount=amount)
        value = Decimal(amount)
        if value <= 0:
            raise InvalidAmountError("Amount must be greater than zero.", amount=amount)
        if value > MAX_AMOUNT:
            raise InvalidAmountError(f"Amount must not exceed {MAX_AMOUNT}.", amount=amount)
        return cls(value.quantize(Decimal(1).scaleb(-places)), currency)

    @property
    def unit(self) -> Decimal:
        """The smallest amount of this currency, e.g. Decimal("0.01") for USD."""
        return Decimal(1).scaleb(-EXPONENTS[self.currency])

    def text(self) -> str:
        """The amount as the API writes it: a string at the currency's scale."""
        return format(self.amount.quantize(self.unit), "f")

    def as_api(self) -> dict[str, str]:
        return {"amount": self.text(), "currency": self.currency}

    def __add__(self, other: "Money") -> "Money":
        return Money(self.amount + self._same_currency(other).amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        return Money(self.amount - self._same_currency(other).amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)

    def __lt__(self, other: "Money") -> bool:
        return self.amount < self._same_currency(other).amount

    def __le__(self, other: "Money") -> bool:
        return self.amount <= self._same_currency(other).amount

    def allocate(self, weights: Sequence[int]) -> list["Money"]:
        """Split in proportion to `weights`; the parts always add up to exactly self.

        Leftover smallest units go to the parts with the largest remainders, so
        Money.of("10", "USD").allocate([1, 2]) gives 3.33 and 6.67, never 9.99.
        """
        if self.amount < 0 or not weights or min(weights) < 0 or sum(weights) == 0:
            raise ValueError("Need a non-negative amount and weights that are not all 0.")
        units, total = int(self.amount / self.unit), sum(weights)
        shares = [units * weight // total for weight in weights]
        by_remainder = sorted(
            range(len(weights)), key=lambda i: units * weights[i] % total, reverse=True
        )
        for i in by_remainder[: units - sum(shares)]:
            shares[i] += 1
        return [Money(share * self.unit, self.currency) for share in shares]

    def _same_currency(self, other: "Money") -> "Money":
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"Cannot combine {self.currency} with {other.currency}.")
        return other
