"""Who is acting and on behalf of which request, for audit rows and log lines.

The API layer sets this per request; tasks and management commands set it around
their work. Services read it; nobody has to thread a request object through.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Actor:
    kind: str  # "api_key", "staff", "system"
    id: str  # public id of the key, staff username, or the task name
    request_id: str = ""
    ip: str = ""


SYSTEM = Actor(kind="system", id="system")

_actor: ContextVar[Actor] = ContextVar("actor", default=SYSTEM)
_request_id: ContextVar[str] = ContextVar("request_id", default="-")


def current_actor() -> Actor:
    return _actor.get()


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(request_id: str) -> None:
    _request_id.set(request_id)


def set_actor(actor: Actor) -> None:
    _actor.set(replace(actor, request_id=actor.request_id or current_request_id()))


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True
