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


def number_text(value: Decimal) -> str:
    """A finite Decimal as the shortest plain JSON number: 12.5, 100, 0.0000001."""
    if not value.is_finite():
        raise ValueError("JSON numbers must be finite.")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def dumps(value: Any) -> str:
    """Serialize dicts, lists, str, bool, None, int and Decimal (as a number); no floats."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return number_text(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"Cannot write {type(value).__name__} as JSON here (floats are refused).")
