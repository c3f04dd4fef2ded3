"""A marketplace's webhook receiver for tests: a tiny WSGI app on a real port.

It records every request (headers and raw body) and answers from a script: a list of
statuses used in turn (then 200), optionally holding a request until released (to kill a
worker mid-delivery) or answering a huge body.
"""

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from providers.sandbox.server import SandboxServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)
    body: bytes = b"ok"
    hold: threading.Event | None = None  # set: requests wait for it (answering 200 after)
    sleep: float = 0.0
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        with self._lock:
            self.received.append(Received(headers, body))
            status = self.statuses.pop(0) if self.statuses else 200
        self.arrived.set()
        if self.hold is not None:
            self.hold.wait(60)
        if self.sleep:
            threading.Event().wait(self.sleep)
        start_response(f"{status} X", [("Content-Type", "text/plain")])
        return [self.body]

    def bodies(self) -> list[bytes]:
        return [r.body for r in self.received]


@contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    with SandboxServer(receiver) as server:
        receiver.url = f"{server.url}/hooks"
        yield receiver
