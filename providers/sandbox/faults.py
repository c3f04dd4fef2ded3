"""Transport faults and the per-key rate limiter, shared by the provider simulators.

A fault rule matches calls by method and a path regex (searched in the path under the
simulator's mount, e.g. "^/v2/payouts$") and fires on the next N matching calls, with a
probability drawn from the simulator's seeded RNG, or both. What a fault does:

- latency: wait, then answer normally.
- timeout: stall, then answer 504 without applying the call (the client gave up first).
- timeout_after_success: apply the call, then stall before answering: the change is made
  but the client never hears of it, which is what by-code lookups exist for.
- reset: close the connection without an answer.
- 500 / 502 / 503 / 429 / 401: that status instead of the real answer.
- malformed_json / empty_body: a 200 whose body is broken JSON / empty.

With apply_first=True any fault runs the real handler before replacing its answer, so
"the provider applied it, then the answer was lost" can be staged for every kind.
"""

import itertools
import random
import re
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from providers.sandbox.wire import Environ, StartFn, WSGIApp, seconds_number

__all__ = ["ApiFault", "ApiFaultKind", "FaultInjector", "RateLimiter", "serve_with_fault"]


class ApiFaultKind(StrEnum):
    LATENCY = "latency"
    TIMEOUT = "timeout"
    TIMEOUT_AFTER_SUCCESS = "timeout_after_success"
    RESET = "reset"
    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    RATE_LIMITED = "429"
    UNAUTHORIZED = "401"
    MALFORMED_JSON = "malformed_json"
    EMPTY_BODY = "empty_body"


_rule_ids = itertools.count(1)


@dataclass(kw_only=True)
class ApiFault:
    kind: ApiFaultKind
    method: str | None = None  # None: any method
    path: str = ""  # regex searched in the path under the mount; "" matches every path
    times: int | None = None  # fire on the next N matching calls; None: no limit
    probability: float | None = None  # fire with this probability (seeded RNG); None: always
    seconds: float = 0.0  # latency or stall duration
    apply_first: bool = False  # run the real handler before faulting
    id: int = field(default_factory=lambda: next(_rule_ids))
    fired: int = 0

    def __post_init__(self) -> None:
        self.kind = ApiFaultKind(self.kind)
        re.compile(self.path)  # refuse a bad pattern when the rule is added, not when it fires
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError("probability must be between 0 and 1")
        if self.seconds < 0:
            raise ValueError("seconds cannot be negative")
        if self.kind == ApiFaultKind.TIMEOUT_AFTER_SUCCESS:
            self.apply_first = True

    def matches(self, *, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return re.search(self.path, path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "method": self.method,
            "path": self.path,
            "times": self.times,
            "probability": None if self.probability is None else seconds_number(self.probability),
            "seconds": seconds_number(self.seconds),
            "applyFirst": self.apply_first,
            "fired": self.fired,
        }


class FaultInjector:
    """The active fault rules; the first rule that matches and fires wins."""

    def __init__(self, *, lock: threading.RLock, rng: random.Random) -> None:
        self._lock = lock
        self.rng = rng
        self._rules: list[ApiFault] = []

    def add(self, fault: ApiFault) -> ApiFault:
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[ApiFault]:
        with self._lock:
            return list(self._rules)

    def pick(self, *, method: str, path: str) -> ApiFault | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method=method, path=path):
                    continue
                if rule.probability is not None and self.rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                return rule
        return None


class RateLimiter:
    """At most `per_second` calls per key in any sliding second of real (monotonic) time.

    Real time, not the test clock: the limit is about throughput. Tests pass a fake
    `monotonic` to make it deterministic.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        per_second: int | None,
        monotonic: Callable[[], float],
    ) -> None:
        self._lock = lock
        self.per_second = per_second
        self._monotonic = monotonic
        self._calls: dict[str, deque[float]] = {}
        self.refused = 0

    def allow(self, key: str) -> bool:
        with self._lock:
            if self.per_second is None:
                return True
            now = self._monotonic()
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 1.0:
                calls.popleft()
            if len(calls) >= self.per_second:
                self.refused += 1
                return False
            calls.append(now)
            return True

    def set_limit(self, per_second: int | None) -> None:
        """A new limit starts with empty windows; the count of refusals stays."""
        with self._lock:
            self.per_second = per_second
            self._calls.clear()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self.refused = 0


@dataclass(frozen=True, kw_only=True)
class CannedAnswer:
    status: str  # "503 Service Unavailable"
    headers: list[tuple[str, str]]
    body: bytes


def _run(app: WSGIApp, environ: Environ) -> CannedAnswer:
    """Call the real handler and collect its whole answer."""
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda _data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return CannedAnswer(status=captured["status"], headers=captured["headers"], body=body)


def _send(answer: CannedAnswer, start_response: StartFn) -> Iterable[bytes]:
    headers = [(k, v) for k, v in answer.headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(answer.body))))
    start_response(answer.status, headers)
    return [answer.body]


def _reset(environ: Environ) -> None:
    """Drop the connection with no answer (an RST where the server exposes its socket)."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    # werkzeug's server treats a ConnectionError from the app as a dropped connection.
    raise ConnectionResetError("sandbox fault: connection reset")


def serve_with_fault(
    fault: ApiFault,
    *,
    app: WSGIApp,
    environ: Environ,
    start_response: StartFn,
    sleep: Callable[[float], None],
    error_answer: Callable[[ApiFaultKind], CannedAnswer],
) -> Iterable[bytes]:
    """Answer one call the way `fault` says; `error_answer` gives the provider's own bodies."""
    if fault.kind == ApiFaultKind.LATENCY:
        sleep(fault.seconds)
        return app(environ, start_response)

    real = _run(app, environ) if fault.apply_first else None
    match fault.kind:
        case ApiFaultKind.TIMEOUT_AFTER_SUCCESS | ApiFaultKind.TIMEOUT:
            sleep(fault.seconds)
            if real is not None:
                return _send(real, start_response)
            return _send(error_answer(ApiFaultKind.TIMEOUT), start_response)
        case ApiFaultKind.RESET:
            _reset(environ)
        case ApiFaultKind.MALFORMED_JSON:
            # Half of a JSON document is never a JSON document.
            body = real.body[: len(real.body) // 2] if real and len(real.body) > 1 else b'{"id": "'
            return _send(
                CannedAnswer(
                    status=real.status if real else "200 OK",
                    headers=[("Content-Type", "application/json; charset=utf-8")],
                    body=body,
                ),
                start_response,
            )
        case ApiFaultKind.EMPTY_BODY:
            return _send(
                CannedAnswer(
                    status=real.status if real else "200 OK",
                    headers=[("Content-Type", "application/json; charset=utf-8")],
                    body=b"",
                ),
                start_response,
            )
    return _send(error_answer(fault.kind), start_response)
