"""JSON on the wire for the simulators: exact money in, JSON numbers out.

Airtm sends and expects amounts as JSON numbers (doubles in their spec). The simulators
keep money as Decimal, so a body is parsed with parse_float=Decimal and written with
Decimal rendered as a plain JSON number, never through float.
"""

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    WSGIApp: TypeAlias = WSGIApplication
    Environ: TypeAlias = WSGIEnvironment
    StartFn: TypeAlias = StartResponse
else:
    WSGIApp = Callable[..., Iterable[bytes]]
    Environ = dict
    StartFn = Callable[..., Any]

__all__ = [
    "Environ",
    "InvalidJSONError",
    "StartFn",
    "WSGIApp",
    "dumps",
    "loads",
    "number",
    "seconds_number",
]


class InvalidJSONError(ValueError):
    """The body is not JSON (or uses NaN/Infinity, which JSON does not have)."""


def _reject_constant(name: str) -> None:
    raise InvalidJSONError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON keeping every non-integer number as an exact Decimal."""
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidJSONError(str(exc)) from exc


def number(value: Decimal) -> str:
    """A Decimal as the JSON number a JavaScript service would print: 10, 9.5, 0.01."""
    if not value.is_finite():
        raise ValueError(f"{value} cannot be written as a JSON number")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def seconds_number(value: float) -> Decimal:
    """A duration or a probability (kept as float) for a JSON body, as its shortest repr."""
    return Decimal(repr(value))


def dumps(value: Any) -> str:
    """Compact JSON where Decimal values are numbers, written digit for digit."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, parts: list[str]) -> None:
    if isinstance(value, Decimal):
        parts.append(number(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                parts.append(",")
            parts.append(json.dumps(str(key)))
            parts.append(":")
            _write(item, parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    elif isinstance(value, float):
        raise TypeError("floats are not written by the simulators; use Decimal")
    else:
        parts.append(json.dumps(value))
