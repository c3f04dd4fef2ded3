"""Order throughput over HTTP (PostgreSQL), beside a minimal view doing one ledger transfer.

    .venv/bin/python bench/orders.py [--seconds 10] [--clients 16] [--workers 5] [--rounds 2]

Starts gunicorn (production settings: DEBUG off, Redis cache and rate limits, PostgreSQL)
on a fresh database, then drives it from `--clients` concurrent HTTP clients (threads with
keep-alive connections), alternating two cases for `--rounds` rounds of `--seconds` each:

- orders:   POST /api/v1/orders (authenticated, rate-limited, validated, with its milestone,
            audit row and event), then POST /api/v1/orders/{id}/reserve (the buyer's hold:
            one ledger entry); one "order" is the pair, timed from the first request to the
            second answer;
- transfer: POST /bench/transfer, a bare Django view doing one ledger transfer_post (no
            authentication, no validation, no audit): the yardstick.

It prints orders/s and transfers/s with p50/p95 latency, the ratio orders/s / transfers/s
(goal >= 0.6) and whether order p95 <= 50 ms, then verifies the ledger.
"""

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import support

DB_URL = support.production_settings(
    database="offerhub_bench_orders",
    redis_db=9,
    DJANGO_SETTINGS_MODULE="bench.orders_settings",
    LEDGER_SEAL_ON_COMMIT="false",  # sealing runs from beat in production, off the hot path
    RATE_LIMIT_REQUESTS="100000000",  # measure the limiter's cost, not its refusals
    LOG_LEVEL="WARNING",
)

import django  # noqa: E402

BUYERS, SELLERS = 400, 40


class Client(threading.Thread):
    def __init__(self, port: int, case: str, data: dict, until: float) -> None:
        super().__init__(daemon=True)
        self.port, self.case, self.data, self.until = port, case, data, until
        self.latencies: list[float] = []
        self.errors = 0

    def _post(
        self, conn: http.client.HTTPConnection, path: str, body: dict, auth: bool
    ) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.data['key']}"
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        buyers, sellers = self.data["buyers"], self.data["sellers"]
        while time.perf_counter() < self.until:
            buyer, seller = random.choice(buyers), random.choice(sellers)
            started = time.perf_counter()
            try:
                if self.case == "transfer":
                    status, _ = self._post(
                        conn,
                        "/bench/transfer",
                        {"source": buyer[1], "destination": seller[1]},
                        False,
                    )
                    ok = status == 201
                else:
                    body = {
                        "buyer_id": buyer[0],
                        "seller_id": seller[0],
                        "amount": "1.00",
                        "title": "Bench order",
                    }
                    status, order = self._post(conn, "/api/v1/orders", body, True)
                    ok = status == 201
                    if ok:
                        status, _ = self._post(
                            conn, f"/api/v1/orders/{order['id']}/reserve", {}, True
                        )
                        ok = status == 200
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                ok = False
            if ok:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.errors += 1


def run_case(port: int, case: str, data: dict, clients: int, seconds: float) -> dict[str, float]:
    until = time.perf_counter() + seconds
    threads = [Client(port, case, data, until) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(lat for t in threads for lat in t.latencies)
    return {
        "rate": len(latencies) / seconds,
        "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95": latencies[max(int(len(latencies) * 0.95) - 1, 0)] * 1000 if latencies else 0.0,
        "n": len(latencies),
        "errors": sum(t.errors for t in threads),
    }


def round_trips(data: dict) -> tuple[int, int]:
    """SQL statements one order and one transfer take, counted in this process."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {data['key']}", SERVER_NAME="localhost")
    buyer, seller = data["buyers"][0], data["sellers"][0]
    body = {"buyer_id": buyer[0], "seller_id": seller[0], "amount": "1.00", "title": "Count"}
    with CaptureQueriesContext(connection) as order_queries:
        created = client.post("/api/v1/orders", body, content_type="application/json")
        client.post(f"/api/v1/orders/{created.json()['id']}/reserve")
    with CaptureQueriesContext(connection) as transfer_queries:
        client.post(
            "/bench/transfer",
            {"source": buyer[1], "destination": seller[1]},
            content_type="application/json",
        )
    return len(order_queries), len(transfer_queries)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    support.fresh_database(DB_URL)
    django.setup()
    data = support.seed_marketplace(buyers=BUYERS, sellers=SELLERS, funds="1000000")
    from django.db import connections

    connections.close_all()
    port = support.free_port()
    server = support.start_gunicorn(port, args.workers)
    try:
        run_case(port, "transfer", data, args.clients, 2.0)  # warm up both paths
        run_case(port, "orders", data, args.clients, 2.0)
        results: dict[str, list[dict[str, float]]] = {"orders": [], "transfer": []}
        print(
            f"PostgreSQL {DB_URL}; Redis {os.environ['REDIS_URL']}; {os.cpu_count()} CPUs; "
            f"gunicorn {args.workers} sync workers; {args.clients} concurrent HTTP clients\n"
        )
        print(f"{'round':<7}{'case':<10}{'per s':>10}{'p50 ms':>10}{'p95 ms':>10}{'errors':>8}")
        for n in range(1, args.rounds + 1):
            for case in ("orders", "transfer"):
                r = run_case(port, case, data, args.clients, args.seconds)
                results[case].append(r)
                print(
                    f"{n:<7}{case:<10}{r['rate']:>10.1f}{r['p50']:>10.2f}{r['p95']:>10.2f}"
                    f"{r['errors']:>8.0f}"
                )
    finally:
        support.stop(server)

    def mean(case: str, key: str) -> float:
        return statistics.fmean(r[key] for r in results[case])

    orders, transfers = mean("orders", "rate"), mean("transfer", "rate")
    ratio = orders / max(transfers, 1e-9)
    p95 = mean("orders", "p95")
    print(
        f"\norders (create+reserve): {orders:.1f}/s, p50 {mean('orders', 'p50'):.1f} ms, "
        f"p95 {p95:.1f} ms"
    )
    print(
        f"transfer view:           {transfers:.1f}/s, p50 {mean('transfer', 'p50'):.1f} ms, "
        f"p95 {mean('transfer', 'p95'):.1f} ms"
    )
    print(
        f"ratio orders/s / transfers/s: {ratio:.2f} (goal >= 0.6: {'met' if ratio >= 0.6 else 'NOT met'}); "
        f"order p95 <= 50 ms: {'met' if p95 <= 50 else 'NOT met'}"
    )

    pair, single = round_trips(data)
    print(
        f"database round trips: {pair} per order (create+reserve), {single} per transfer "
        f"(plus 1 Redis round trip per API request for the rate limit)"
    )

    from ledger.integrity import ledger_verify

    report = ledger_verify()
    print(
        f"verify_ledger: {'OK' if report.ok else 'FAILED'} ({report.entries} entries, {report.accounts} accounts)"
    )


if __name__ == "__main__":
    main()
