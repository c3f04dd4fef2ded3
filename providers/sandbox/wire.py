"""JSON on the wire for the simulators: exact money in, JSON numbers out.

Airtm sends and expects amounts as JSON numbers (doubles in their spec). The simulators
keep money as Decimal; providers.json_numbers parses and writes the bodies, as the clients
do, so no amount passes through a float.
"""

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

from providers import json_numbers

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


def loads(data: bytes | str) -> Any:
    """Parse JSON keeping every non-integer number as an exact Decimal."""
    try:
        return json_numbers.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidJSONError(str(exc)) from exc


def number(value: Decimal) -> str:
    """A Decimal as the JSON number a JavaScript service would print: 10, 9.5, 0.01."""
    return json_numbers.number_text(value)


def seconds_number(value: float) -> Decimal:
    """A duration or a probability (kept as float) for a JSON body, as its shortest repr."""
    return Decimal(repr(value))


def dumps(value: Any) -> str:
    """Compact JSON where Decimal values are numbers, never through float."""
    return json_numbers.dumps(value)
