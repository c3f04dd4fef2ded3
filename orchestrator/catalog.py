"""The event catalog and event type patterns, read from the code.

Every concrete subclass of DomainEvent is a public event type; `event_catalog()` finds them
at run time (after importing each project app's `events` and `services` modules, where they
are declared), so a new event is catalogued and accepted in filters as soon as it exists.
`manage.py event_catalog` writes docs/events.md from it.

Type patterns (SSE `types`, webhook endpoint filters): an exact type ("order.released"), a
prefix ending in ".*" ("order.*": every type under "order.") or "*" (everything).
"""

import dataclasses
import importlib
import importlib.util
import inspect
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.apps import apps
from django.db.models import Q

from orchestrator.errors import ValidationFailedError
from orchestrator.events import DomainEvent

ANY = "*"
_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$")
_PROJECT_APPS = ("orchestrator", "ledger", "providers", "escrow", "webhooks")
_NOT_PAYLOAD = frozenset({"marketplace_id", "user_ids"})


@dataclass(frozen=True)
class EventField:
    name: str
    type: str


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    aggregate_type: str
    description: str
    fields: tuple[EventField, ...]
    module: str
    internal: bool  # sent to no marketplace (no SSE stream, no endpoint filter)


def event_catalog() -> list[CatalogEntry]:
    """Every event type declared in the code, sorted by type."""
    for config in apps.get_app_configs():
        if config.name in _PROJECT_APPS:
            for suffix in ("events", "services"):
                module = f"{config.name}.{suffix}"
                if importlib.util.find_spec(module):
                    importlib.import_module(module)
    found: dict[str, CatalogEntry] = {}
    for cls in _subclasses(DomainEvent):
        event_type = cls.__dict__.get("type")
        if not isinstance(event_type, str) or event_type in found:
            continue
        if cls.__module__.partition(".")[0] not in _PROJECT_APPS:
            continue  # a test's probe, not part of the product
        hints = typing.get_type_hints(cls)
        found[event_type] = CatalogEntry(
            type=event_type,
            aggregate_type=str(getattr(cls, "aggregate_type", "")),
            description=_description(cls),
            fields=tuple(
                EventField(f.name, _type_name(hints.get(f.name, f.type)))
                for f in dataclasses.fields(cls)
                if f.name not in _NOT_PAYLOAD
            ),
            module=cls.__module__,
            internal=bool(getattr(cls, "internal", False)),
        )
    return sorted(found.values(), key=lambda entry: entry.type)


def _description(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(cls.__name__ + "("):  # the signature @dataclass writes when none is given
        return ""
    return inspect.cleandoc(doc)


def _subclasses(cls: type) -> Iterable[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _type_name(annotation: object) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def event_types() -> frozenset[str]:
    return frozenset(entry.type for entry in event_catalog() if not entry.internal)


def validate_patterns(patterns: Sequence[str], *, field: str) -> list[str]:
    """The patterns, deduplicated and sorted; an exact type must be in the catalog.

    Raises:
        ValidationFailedError: a malformed pattern or an unknown exact type.
    """
    known = event_types()
    bad = [
        p
        for p in patterns
        if p != ANY and (not _PATTERN.match(p) or (not p.endswith(".*") and p not in known))
    ]
    if bad:
        raise ValidationFailedError(
            "Unknown event types or malformed patterns (use a type from the catalog, "
            "'<prefix>.*' or '*').",
            fields={field: bad},
        )
    return sorted(set(patterns))


def parse_patterns(raw: str | None, *, field: str = "types") -> list[str]:
    """Comma-separated patterns from a query parameter; empty means everything."""
    if not raw:
        return []
    return validate_patterns([p.strip() for p in raw.split(",") if p.strip()], field=field)


def type_matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether `event_type` is selected by `patterns` (an empty list selects everything)."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in (ANY, event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def patterns_q(patterns: Sequence[str], field: str = "type") -> Q:
    """The query filter selecting what `patterns` select."""
    if not patterns or ANY in patterns:
        return Q()
    query = Q()
    for pattern in patterns:
        if pattern.endswith(".*"):
            query |= Q(**{f"{field}__startswith": pattern[:-1]})
        else:
            query |= Q(**{field: pattern})
    return query
