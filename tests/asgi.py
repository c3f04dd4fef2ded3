"""Real ASGI server processes (uvicorn) for SSE tests, and a small SSE client.

Each server runs this project under tests.settings on the test database of this pytest
process (tests using one must commit: `django_db(transaction=True)`) and on the same Redis,
as production's several server processes do.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from django.conf import settings
from django.db import connection

from tests.worker import ROOT, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AsgiServer:
    def __init__(self, **env: str) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "AsgiServer":
        db = settings.DATABASES["default"]
        env = {
            **os.environ,
            "OFFERHUB_TEST_WORKER": "1",  # tests.settings: no second shift of REDIS_URL
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            **self.env,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "orchestrator.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "1",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        wait_until(self._healthy, timeout=60, interval=0.2)
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError("uvicorn exited")
        try:
            return requests.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class SseClient:
    """Reads a stream on a thread and keeps every frame: {"id", "event", "data"}.

    Plain HTTP/1.1 over a socket, so that close() ends the read at once (a disconnect)."""

    def __init__(self, url: str, key: str, *, last_event_id: str = "", **params: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.target = parts.path + ("?" + urlencode(params) if params else "")
        self.headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        if last_event_id:
            self.headers["Last-Event-ID"] = last_event_id
        self.frames: list[dict[str, Any]] = []
        self.opened = threading.Event()
        self.status: int | None = None
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "SseClient":
        self._thread.start()
        if not self.opened.wait(30):
            raise AssertionError(f"the stream did not open (status {self.status})")
        return self

    def _run(self) -> None:
        try:
            self._sock = socket.create_connection(self.address, timeout=120)
            head = f"GET {self.target} HTTP/1.1\r\nHost: {self.address[0]}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items()) + "\r\n"
            self._sock.sendall(head.encode())
            stream = self._sock.makefile("rb")
            self.status = int(stream.readline().split()[1])
            while stream.readline() not in (b"\r\n", b""):
                pass
            buffer = ""
            while True:
                size = int(stream.readline().strip() or b"0", 16)
                if size == 0:
                    return
                buffer += stream.read(size).decode()
                stream.readline()
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self._parse(block)
        except (OSError, ValueError, IndexError):
            pass  # closed by close(), or by the server going away
        finally:
            self.opened.set()

    def _parse(self, block: str) -> None:
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(": stream open"):
                self.opened.set()
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            self.frames.append(fields)

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] != "ping"]

    def ids(self) -> list[str]:
        return [f["id"] for f in self.events()]

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        self._thread.join(10)
