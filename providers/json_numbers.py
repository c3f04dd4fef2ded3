"""JSON whose numbers are exact: Decimal in, Decimal out, never a float.

Trustless Work speaks amounts as JSON numbers (`"amount": 12.5`). Python's json module
would read them as floats and cannot write a Decimal as a number, so both sides of the
wire go through here: `loads` reads every non-integer number as a Decimal, `dumps` writes
a Decimal as a plain number with exactly the digits it needs (12.5, 100, 0.0000001).
"""

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any


def loads(text: str | bytes) -> Any:
    """Parse JSON; non-integer numbers become Decimal.

    Raises:
        ValueError: not JSON (json.JSONDecodeError is a ValueError), or a NaN/Infinity.
    """
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def number_text(value: Decimal, *, normalize: bool = True) -> str:
    """A finite Decimal as a plain JSON number: the shortest (12.5, 100, 0.0000001), or with
    `normalize=False` the digits it holds (500.00 stays 500.00)."""
    if not value.is_finite():
        raise ValueError("JSON numbers must be finite.")
    text = format(value.normalize() if normalize else value, "f")
    return "0" if text in ("-0", "0") else text


def dumps(value: Any, *, normalize: bool = True) -> str:
    """Serialize dicts, lists, str, bool, None, int and Decimal (as a number); no floats.

    `normalize=False` writes each Decimal with the digits it holds (see number_text).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return number_text(value, normalize=normalize)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps(v, normalize=normalize)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(dumps(v, normalize=normalize) for v in value) + "]"
    raise TypeError(f"Cannot write {type(value).__name__} as JSON here (floats are refused).")
