"""The simulation's network: every `requests` call to the sandbox or to us, served in-process.

`InProcessNet` patches `requests.adapters.HTTPAdapter.send` while it is active. Requests to
`http://sandbox.sim/...` are handed to the simulators' WSGI app (the very app `run_sandbox`
serves), requests to `http://orchestrator.sim/...` (the Airtm simulator's Svix webhooks,
the payer's browser coming back) to this Django project through its test client; any other
URL goes out as usual. Nothing listens on a port and nothing waits on a wall clock, so a
run is fast and repeatable.

Timeouts: a simulator fault that would stall its answer (Airtm `timeout` and
`timeout_after_success`, Trustless Work `timeout` and `timeout_after_apply`) does not
sleep here; the stall is recorded, and when it is at least the client's read timeout the
client gets `requests.ReadTimeout` instead of the answer, after the simulator has (or has
not) applied the call: exactly what a real client would see. A `reset` fault raises
`requests.ConnectionError`.
"""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from django.test import Client
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from werkzeug.test import EnvironBuilder, run_wsgi_app

from bench.simulation.tasks import WorkerKilled

SANDBOX_HOST = "sandbox.sim"
ORCHESTRATOR_HOST = "orchestrator.sim"
SANDBOX_URL = f"http://{SANDBOX_HOST}"
ORCHESTRATOR_URL = f"http://{ORCHESTRATOR_HOST}"

WSGIApp = Callable[..., Any]


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        return None if timeout[1] is None else float(timeout[1])
    return None if timeout is None else float(timeout)


def _response(
    request: requests.PreparedRequest, status: int, headers: Mapping[str, str], body: bytes
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(headers)
    response._content = body
    response.url = request.url or ""
    response.request = request
    response.reason = ""
    response.encoding = "utf-8"
    return response


class InProcessNet:
    """Route the sandbox's and our own URLs in-process (see the module docstring)."""

    def __init__(self, sandbox_app: WSGIApp, *, on_kill: Callable[[], None]) -> None:
        self.sandbox_app = sandbox_app
        self.on_kill = on_kill
        self.django = Client(raise_request_exception=False)
        self._stalls: list[float] = []  # a stack: one slot per request being served
        self.requests = 0
        self.server_errors: list[str] = []  # 500s of ours: an unhandled error is a bug

    def stall(self, seconds: float) -> None:
        """A simulator held its answer back for `seconds` (its sleep, patched to this)."""
        if self._stalls:
            self._stalls[-1] = max(self._stalls[-1], seconds)

    @contextmanager
    def active(self) -> Iterator["InProcessNet"]:
        original = HTTPAdapter.send
        net = self

        def send(adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            host = urlsplit(request.url or "").hostname
            if host == SANDBOX_HOST:
                return net._sandbox(request, _read_timeout(kwargs.get("timeout")))
            if host == ORCHESTRATOR_HOST:
                return net._orchestrator(request)
            return original(adapter, request, **kwargs)

        HTTPAdapter.send = send  # type: ignore[assignment,method-assign]
        try:
            yield self
        finally:
            HTTPAdapter.send = original  # type: ignore[method-assign]

    def _sandbox(self, request: requests.PreparedRequest, read_timeout: float | None) -> Any:
        self.requests += 1
        parts = urlsplit(request.url or "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        environ = EnvironBuilder(
            path=parts.path,
            query_string=parts.query,
            method=request.method or "GET",
            headers=list(request.headers.items()),
            data=body or b"",
            base_url=SANDBOX_URL,
        ).get_environ()
        self._stalls.append(0.0)
        try:
            app_iter, status, headers = run_wsgi_app(self.sandbox_app, environ, buffered=True)
            content = b"".join(app_iter)
        except ConnectionError as exc:  # a `reset` fault drops the connection
            raise requests.ConnectionError(f"sandbox fault: {exc}", request=request) from None
        finally:
            stalled = self._stalls.pop()
        if read_timeout is not None and stalled >= read_timeout:
            raise requests.ReadTimeout("sandbox fault: no answer in time", request=request)
        return _response(request, int(status.split()[0]), dict(headers), content)

    def _orchestrator(self, request: requests.PreparedRequest) -> Any:
        parts = urlsplit(request.url or "")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        content_type = request.headers.get("Content-Type", "application/octet-stream")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("content-type", "content-length", "host")
        }
        try:
            answer = self.django.generic(
                request.method or "GET",
                path,
                data=request.body or b"",
                content_type=content_type,
                headers=headers,
            )
        except WorkerKilled:  # our web process died mid-request: the caller sees a reset
            self.on_kill()
            raise requests.ConnectionError("orchestrator died", request=request) from None
        body = b"" if answer.streaming else answer.content
        if answer.status_code == 500:
            self.server_errors.append(f"{request.method} {parts.path}: {body[:300]!r}")
        return _response(request, answer.status_code, dict(answer.items()), body)
