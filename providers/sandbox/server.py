"""Serve the provider simulators over HTTP on one port, each under its own prefix.

build_app({"/airtm": airtm, "/trustless-work": tw}) mounts the WSGI apps (anything else
answers a plain 404), and SandboxServer runs the result on 127.0.0.1 in a background
thread: `with SandboxServer(app) as server: requests.get(server.url + "/airtm/v2/me")`.
Port 0 picks a free port, so parallel test processes never collide.
"""

import logging
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from providers.sandbox.wire import Environ, StartFn, WSGIApp, dumps

__all__ = ["SandboxServer", "build_app"]

logger = logging.getLogger(__name__)


def _not_mounted(environ: Environ, start_response: StartFn) -> Iterable[bytes]:
    body = dumps({"code": "NOT_FOUND", "message": "No simulator is mounted here"}).encode()
    start_response(
        "404 Not Found",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def build_app(apps: Mapping[str, WSGIApp]) -> WSGIApp:
    """One WSGI app that routes "/<prefix>/..." to apps["/<prefix>"] (prefix stripped)."""
    mounts: dict[str, WSGIApp] = {}
    for prefix, app in apps.items():
        if not prefix.startswith("/") or prefix.endswith("/") or prefix == "/":
            raise ValueError(f"a mount prefix looks like '/airtm', not {prefix!r}")
        mounts[prefix] = app
    return DispatcherMiddleware(_not_mounted, mounts)


class _QuietHandler(WSGIRequestHandler):
    """No access log (tests); a dropped connection ends it without waiting for more."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return

    def connection_dropped(self, error: BaseException, environ: Environ | None = None) -> None:
        self.close_connection = True


class _LoggingHandler(_QuietHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        WSGIRequestHandler.log_request(self, code, size)


class SandboxServer:
    """A threaded werkzeug server on 127.0.0.1 for the life of a `with` block."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.access_log = access_log
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return f"http://{self.host}:{self._server.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = _LoggingHandler if self.access_log else _QuietHandler
        server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-server-{server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or Ctrl-C (for run_sandbox)."""
        self.start()
        thread = self._thread
        try:
            while thread is not None and thread.is_alive():
                thread.join(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop accepting, close the socket and join the serving thread.

        Requests still being answered run on daemon threads and are not waited for (a
        fault may stall one on purpose).
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state: Any = self.url if self._server is not None else "stopped"
        return f"<SandboxServer {state}>"
