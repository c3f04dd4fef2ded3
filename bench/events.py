"""Outbound webhook and SSE benchmark (PostgreSQL + Redis, everything on 127.0.0.1).

    .venv/bin/python bench/events.py [--deliveries 2000] [--streams 500] [--events 200]

1. Deliveries/s per worker: queues `--deliveries` webhook deliveries (one endpoint, one
   event each, written as the product writes them), then starts one Celery worker process
   (solo pool, as many as `--workers`) and times it until every delivery succeeded against a
   local receiver answering 200. Each delivery is a full claim (FOR UPDATE SKIP LOCKED),
   a signed POST and the recorded attempt.
2. SSE lag with `--streams` open streams: starts uvicorn (`--sse-servers` processes), opens
   the streams from a separate client process, then publishes `--events` events at
   `--rate` per second; lag is the time from an event's creation (inside its transaction) to
   its frame arriving at a client, over every (event, stream) pair. Prints p50/p95/max and
   how many frames arrived out of how many were expected.

Goals from the issue: >= 50 deliveries/s per worker, SSE lag p95 <= 1 s with 500 streams.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import support

DB_URL = support.production_settings(
    database="offerhub_bench_events",
    redis_db=12,
    WEBHOOK_TEST_MODE="true",  # the receiver is on 127.0.0.1 over http
    LOG_LEVEL="WARNING",  # not an access line per stream
)
QUEUE = f"bench-events-{os.getpid()}"
CONNECTING = 20

import django  # noqa: E402


class Receiver(BaseHTTPRequestHandler):
    """A marketplace's receiver: reads the body, answers 200, keeps the connection alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # One write: headers and body in separate packets meet delayed ACKs (40 ms stalls).
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
        )

    def log_message(self, format: str, *args: Any) -> None:
        return


def bench_deliveries(count: int, workers: int) -> None:
    from django.db import transaction

    from orchestrator.celery import app
    from orchestrator.services import marketplace_create, user_create
    from webhooks.models import WebhookDelivery
    from webhooks.outbound import endpoint_create

    app.conf.update(task_always_eager=False, task_default_queue=QUEUE)
    marketplace = marketplace_create(name="bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    try:
        endpoint_create(marketplace=marketplace, url=url, event_types=["*"])
        for start in range(0, count, 100):
            with transaction.atomic():
                for n in range(start, min(count, start + 100)):
                    user_create(marketplace=marketplace, external_user_id=f"d{n}", type="BOTH")
        pending = WebhookDelivery.objects.filter(status="pending")
        print(f"queued {pending.count()} deliveries; starting {workers} worker(s)")
        processes = [support.start_worker(QUEUE) for _ in range(workers)]
        done = WebhookDelivery.objects.filter(status="succeeded")
        try:
            launched = time.perf_counter()
            while not done.exists():  # the clock starts at the first delivery (worker up)
                time.sleep(0.01)
            started, first = time.perf_counter(), done.count()
            while pending.exists():
                time.sleep(0.05)
                if time.perf_counter() - launched > 600:
                    raise SystemExit("deliveries did not finish in 10 minutes")
            elapsed = time.perf_counter() - started
        finally:
            for process in processes:
                support.stop(process)
    finally:
        receiver.shutdown()
    measured = done.count() - first
    print(
        f"deliveries: {measured} in {elapsed:.2f} s once the worker(s) ran -> "
        f"{measured / elapsed:.1f}/s with {workers} worker(s), "
        f"{measured / elapsed / workers:.1f}/s per worker"
    )


# --- SSE -----------------------------------------------------------------------------------


async def _stream(
    port: int,
    key: str,
    lags: list[float],
    opened: list[int],
    expected: int,
    connecting: asyncio.Semaphore,
) -> None:
    await connecting.acquire()  # released once the stream is open
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    status = (await reader.readline()).split()[1]
    if status != b"200":
        raise SystemExit(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    buffer, got = b"", 0
    while got < expected:
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            break
        buffer += await reader.readexactly(size + 2)
        buffer = buffer[:-2] if buffer.endswith(b"\r\n") else buffer
        now = time.time()
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            if block.startswith(b"retry:"):
                opened.append(1)
                connecting.release()
                continue
            for line in block.split(b"\n"):
                if line.startswith(b"data: ") and b'"created_at"' in line:
                    created = json.loads(line[6:])["created_at"]
                    lags.append(now - datetime.fromisoformat(created).timestamp())
                    got += 1
    writer.close()


def sse_clients(
    ports: list[int], key: str, streams: int, expected: int, ready: Any, results: Any
) -> None:
    async def run() -> list[float]:
        lags: list[float] = []
        opened: list[int] = []
        # Connections open CONNECTING at a time: each request's authentication holds a
        # database connection while it runs (see README, "SSE"), and PostgreSQL here allows
        # 100 clients for everything on the machine.
        connecting = asyncio.Semaphore(CONNECTING)
        tasks = [
            asyncio.create_task(
                _stream(ports[n % len(ports)], key, lags, opened, expected, connecting)
            )
            for n in range(streams)
        ]
        while len(opened) < streams:
            await asyncio.sleep(0.05)
        ready.set()
        await asyncio.wait(tasks, timeout=60 + expected)
        for task in tasks:
            task.cancel()
        return lags

    results.put(asyncio.run(run()))


def bench_sse(streams: int, events: int, rate: float, servers: int) -> None:
    from orchestrator.services import api_key_create, marketplace_create, user_create

    marketplace = marketplace_create(name="sse", slug=f"sse-{uuid.uuid4().hex[:8]}")
    _, key = api_key_create(
        marketplace=marketplace, name="bench", scopes=["read"], environment="test"
    )
    ports = [support.free_port() for _ in range(servers)]
    processes = [support.start_uvicorn(port) for port in ports]
    try:
        for port, process in zip(ports, processes, strict=True):
            support.wait_for_port(port, process)
        ready = multiprocessing.Event()
        results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
        client = multiprocessing.Process(
            target=sse_clients, args=(ports, key, streams, events, ready, results)
        )
        client.start()
        if not ready.wait(120):
            raise SystemExit("streams did not open")
        print(f"{streams} streams open on {servers} uvicorn process(es); publishing {events}")
        started = time.perf_counter()
        for n in range(events):
            user_create(marketplace=marketplace, external_user_id=f"s{n}", type="BOTH")
            pause = started + (n + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        lags = sorted(results.get(timeout=120 + events))
        client.join(30)
    finally:
        for process in processes:
            support.stop(process)
    expected = streams * events
    if not lags:
        raise SystemExit("no frame arrived")
    p50 = statistics.median(lags)
    p95 = lags[min(len(lags) - 1, int(len(lags) * 0.95))]
    print(
        f"SSE lag over {len(lags)}/{expected} frames ({events} events x {streams} streams, "
        f"{rate:g} events/s): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {lags[-1] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--sse-servers", type=int, default=1)
    args = parser.parse_args()

    support.fresh_database(DB_URL)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"PostgreSQL {DB_URL}; Redis {os.environ['REDIS_URL']}; {os.cpu_count()} CPUs")
    if args.deliveries:
        bench_deliveries(args.deliveries, args.workers)
    if args.streams:
        bench_sse(args.streams, args.events, args.rate, args.sse_servers)


if __name__ == "__main__":
    main()
