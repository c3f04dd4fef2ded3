"""Ledger throughput benchmark (PostgreSQL).

    .venv/bin/python bench/ledger.py [--seconds 5] [--workers 1,4,16] [--database URL]
        [--rounds 1] [--cases uniform,hot,system,raw-sql,raw+event] [--warmup 1]

The scratch database (dropped and recreated each run) is --database, else $BENCH_DATABASE_URL,
else postgres://postgres@127.0.0.1:5432/offerhub_bench; its name must start with
offerhub_bench. $DATABASE_URL is ignored, so exporting it for the tests never points the
benchmark (and its DROP DATABASE) at the test or development database.

Prints transfers/s, p50/p95 latency, errors, and the CPU time per transfer of the worker
process (app) and of its PostgreSQL backend (db; read from /proc, so a local server only)
through the ledger services at 1, 4 and 16 concurrent worker processes, for three shapes of
traffic:

- uniform: transfers between random pairs of 200 users;
- hot:     every transfer between two of the same 10 users (row-lock contention);
- system:  every transfer from one unbounded system account (Airtm clearing) to a random
           user, as top-ups do (the shard design keeps it from being a queue);

and the same uniform transfer written as raw SQL through psycopg ("raw-sql": lock, check,
entry, postings, balances; "raw+event": the same plus the outbox event row the service also
writes), with the ratios service / raw. All cases at one concurrency run back to back
(then the next concurrency), so each ratio compares figures taken under the same load from
whatever else shares the machine; --rounds N repeats everything and reports medians. Entries are sealed into the hash chain afterwards (as Celery beat does in
production, outside the posting transaction); the seal rate and a full verify_ledger follow.
"""

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import support

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/offerhub_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
os.environ["LEDGER_SEAL_ON_COMMIT"] = "false"  # sealing is measured separately, as in production
support.production_secrets()  # DEBUG off (no query logging), as production runs

import django  # noqa: E402
import psycopg  # noqa: E402

USERS, HOT_USERS, FUNDS = 200, 10, Decimal("100000000")


def _use_database(url: str) -> None:
    """Point this process (and the workers it forks) at the scratch database `url`."""
    global DB_URL
    DB_URL = os.environ["DATABASE_URL"] = url


def setup() -> dict[str, list[int]]:
    from django.core.management import call_command

    from ledger.money import Money
    from ledger.services import system_account
    from orchestrator.services import marketplace_create, user_create
    from tests.ledger.conftest import available, fund

    call_command("migrate", verbosity=0)
    market = marketplace_create(name="bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    users = [
        user_create(marketplace=market, external_user_id=f"u{n}", email="", type="BOTH")[0]
        for n in range(USERS)
    ]
    for user in users:
        fund(user, Money(FUNDS, "USD"))
    clearing = system_account(
        marketplace_id=market.pk, code="provider_clearing:airtm", currency="USD"
    )
    accounts = [available(user).pk for user in users]
    return {"all": accounts, "hot": accounts[:HOT_USERS], "clearing": [clearing.pk]}


# One worker's figures: latencies (s), errors, and the CPU seconds its own process and its
# PostgreSQL backend used.
Result = tuple[list[float], int, float, float]


class _CpuMeter:
    """CPU time used since creation by this process and by one PostgreSQL backend.

    On a machine shared with other work, transfers/s move with everyone else's load; CPU
    per transfer is a property of the code, and shows where a variant spends (Python or the
    database). The backend's share is read from /proc, so only for a local server (NaN else).
    """

    def __init__(self, backend_pid: int) -> None:
        self.backend_pid = backend_pid
        self.app, self.db = time.process_time(), support.cpu_seconds(backend_pid)

    def used(self) -> tuple[float, float]:
        return time.process_time() - self.app, support.cpu_seconds(self.backend_pid) - self.db


def _service_worker(
    shape: str,
    ids: dict[str, list[int]],
    seconds: float,
) -> Result:
    from django.db import connections

    from ledger.models import Account
    from ledger.money import Money
    from ledger.services import transfer_post

    connections.close_all()  # never share the parent's connection
    accounts = {a.pk: a for a in Account.objects.filter(pk__in=ids["all"] + ids["clearing"])}
    amount = Money(Decimal("0.01"), "USD")
    pool = ids["hot"] if shape == "hot" else ids["all"]
    latencies, errors = [], 0
    cpu = _CpuMeter(connections["default"].connection.info.backend_pid)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if shape == "system":
            source, destination = ids["clearing"][0], random.choice(pool)
        else:
            source, destination = random.sample(pool, 2)
        started = time.perf_counter()
        try:
            transfer_post(
                source=accounts[source],
                destination=accounts[destination],
                amount=amount,
                reference=f"bench:{uuid.uuid4().hex}",
            )
        except Exception:  # counted: the goal is zero
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    return (latencies, errors, *cpu.used())


def _raw_worker(
    shape: str,
    ids: dict[str, list[int]],
    seconds: float,
) -> Result:
    """The same logical transfer in hand-written SQL: lock, check, entry, postings, balances."""
    from django.db import connections

    connections.close_all()
    from ledger.models import JournalEntry

    market = JournalEntry.objects.values_list("marketplace_id", flat=True).first()
    latencies, errors = [], 0
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        cpu = _CpuMeter(conn.info.backend_pid)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            a, b = random.sample(ids["all"], 2)
            started = time.perf_counter()
            try:
                with conn.transaction():
                    rows = conn.execute(
                        "SELECT id, balance FROM ledger_account WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                        [[a, b]],
                    ).fetchall()
                    balances: dict[int, Decimal] = {row[0]: row[1] for row in rows}
                    if balances[a] < Decimal("0.01"):
                        raise RuntimeError("insufficient funds")
                    entry = conn.execute(
                        "INSERT INTO ledger_journalentry (public_id, marketplace_id, reference, kind,"
                        " memo, metadata, created_at, prev_hash, hash) VALUES (%s, %s, %s, 'raw', '',"
                        " '{}', now(), '', '') RETURNING id",
                        ["je_" + uuid.uuid4().hex[:24], market, "raw:" + uuid.uuid4().hex],
                    ).fetchone()[0]  # type: ignore[index]
                    conn.execute(
                        "INSERT INTO ledger_posting (entry_id, account_id, amount, currency)"
                        " VALUES (%s, %s, -0.01, 'USD'), (%s, %s, 0.01, 'USD')",
                        [entry, a, entry, b],
                    )
                    conn.execute(
                        "UPDATE ledger_account SET balance = balance + CASE id WHEN %s THEN -0.01"
                        " ELSE 0.01 END WHERE id = ANY(%s)",
                        [a, [a, b]],
                    )
                    if shape == "with-event":  # the outbox row the service writes too
                        conn.execute(
                            "INSERT INTO orchestrator_event (public_id, marketplace_id, type,"
                            " aggregate_type, aggregate_id, user_ids, payload, request_id,"
                            " created_at) VALUES (%s, %s, 'balance.updated', 'ledger_entry', %s,"
                            " '[]', %s, '', now())",
                            ["evt_" + uuid.uuid4().hex[:24], market, "je_x", '{"changes": []}'],
                        )
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
        app, db = cpu.used()
    return (latencies, errors, app, db)


HEADER = (
    f"{'case':<10}{'workers':>8}{'transfers/s':>14}{'p50 ms':>10}{'p95 ms':>10}{'errors':>8}"
    f"{'CPU ms per transfer: app':>27}{'db':>6}"
)


def _print_row(name: str, workers: int, r: dict[str, float]) -> None:
    print(
        f"{name:<10}{workers:>8}{r['tps']:>14.0f}{r['p50']:>10.2f}{r['p95']:>10.2f}"
        f"{r['errors']:>8.0f}{r['app_cpu']:>27.2f}{r['db_cpu']:>6.2f}",
        flush=True,
    )


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over rounds; errors are summed (the goal is zero in every run)."""
    return {
        key: sum(r[key] for r in results)
        if key == "errors"
        else statistics.median(r[key] for r in results)
        for key in results[0]
    }


def _worker_main(
    worker: Callable[..., Result],
    args: tuple[Any, ...],
    out: "multiprocessing.Queue[tuple[str, Any]]",
) -> None:
    """Run one worker in its own process; always report back, if only how it failed."""
    try:
        out.put(("ok", worker(*args)))
    except BaseException as exc:  # e.g. "too many clients" from a server other runs share
        out.put(("failed", f"{type(exc).__name__}: {exc}"))
        raise


def run(
    worker: Callable[..., Result],
    shape: str,
    ids: dict[str, list[int]],
    workers: int,
    seconds: float,
) -> dict[str, float]:
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(worker, (shape, ids, seconds), out))
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    # A worker that cannot report (killed) must not hang the run: wait a bounded time.
    reports = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join()
    failures = [detail for status, detail in reports if status != "ok"]
    if failures:
        raise SystemExit(f"{len(failures)} {shape} worker(s) failed: {failures[0]}")
    results: list[Result] = [detail for _, detail in reports]
    latencies = sorted(lat for lats, *_ in results for lat in lats)
    done = max(len(latencies), 1)
    return {
        "tps": len(latencies) / seconds,
        "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else 0.0,
        "errors": sum(r[1] for r in results),
        "app_cpu": sum(r[2] for r in results) * 1000 / done,
        "db_cpu": sum(r[3] for r in results) * 1000 / done,
    }


CASES: dict[str, tuple[Callable[..., Result], str]] = {
    "uniform": (_service_worker, "uniform"),
    "hot": (_service_worker, "hot"),
    "system": (_service_worker, "system"),
    "raw-sql": (_raw_worker, "uniform"),
    "raw+event": (_raw_worker, "with-event"),
}


Figures = dict[tuple[str, int], dict[str, float]]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", default="1,4,16")
    parser.add_argument("--database", default=DB_URL, help="scratch database URL (offerhub_bench*)")
    parser.add_argument("--cases", default=",".join(CASES), help="a subset, for quick comparisons")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every case; the summary shows medians"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of unreported uniform traffic first"
    )
    args = parser.parse_args()
    _use_database(args.database)
    levels = [int(w) for w in args.workers.split(",")]
    names = [name.strip() for name in args.cases.split(",")]

    support.fresh_database(DB_URL)
    django.setup()
    ids = setup()
    print(f"PostgreSQL {DB_URL}; {os.cpu_count()} CPUs; {args.seconds:g} s per case")
    # The first seconds on a fresh database run slower (cold caches, autovacuum after the
    # setup), whichever case comes first; they are not reported.
    if args.warmup > 0:
        run(_service_worker, "uniform", ids, 1, args.warmup)
    figures = _run_cases(names, levels, ids, args.seconds, args.rounds)
    _print_ratios(figures, levels)
    _seal_and_verify()
    _print_goals(figures, levels)


def _run_cases(
    names: list[str], levels: list[int], ids: dict[str, list[int]], seconds: float, rounds: int
) -> Figures:
    """Every case at every concurrency, `rounds` times; the median figures per case.

    Cases at one concurrency run back to back, so the service and raw-SQL figures that form
    a ratio are measured under the same load from whatever else shares the machine.
    """
    print(f"\n{HEADER}")
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for n in levels:
            for name in names:
                worker, shape = CASES[name]
                r = run(worker, shape, ids, n, seconds)
                runs.setdefault((name, n), []).append(r)
                _print_row(name, n, r)
    figures = {key: _median(results) for key, results in runs.items()}
    if rounds > 1:
        print(f"\nmedian of {rounds} rounds (errors: total)")
        for name in names:
            for n in levels:
                _print_row(name, n, figures[(name, n)])
    return figures


def _print_ratios(figures: Figures, levels: list[int]) -> None:
    print()
    for n in levels:
        if not {("uniform", n), ("raw-sql", n), ("raw+event", n)} <= figures.keys():
            continue
        service = figures[("uniform", n)]["tps"]
        bare = service / max(figures[("raw-sql", n)]["tps"], 1e-9)
        like = service / max(figures[("raw+event", n)]["tps"], 1e-9)
        print(
            f"service / raw SQL at {n} workers (uniform): {bare:.2f} against the bare ledger rows,"
            f" {like:.2f} against ledger rows + the outbox event the service also writes"
        )


def _seal_and_verify() -> None:
    from ledger.integrity import ledger_seal, ledger_verify

    started = time.perf_counter()
    sealed = ledger_seal()
    elapsed = time.perf_counter() - started
    print(
        f"\nsealed {sealed} entries into the hash chain in {elapsed:.1f} s ({sealed / max(elapsed, 1e-9):.0f}/s)"
    )
    # The raw-SQL entries were written without the service; they balance, so verify passes.
    report = ledger_verify(seal=False)
    print(
        f"verify_ledger: {'OK' if report.ok else 'FAILED'} ({report.entries} entries, {report.accounts} accounts)"
    )
    for problem in report.problems[:10]:
        print("  ", problem)


def _print_goals(figures: Figures, levels: list[int]) -> None:
    goal = figures.get(("uniform", 4))
    if goal and ("raw-sql", 4) in figures and all(("hot", n) in figures for n in levels):
        ratio = goal["tps"] / max(figures[("raw-sql", 4)]["tps"], 1e-9)  # the stricter ratio
        print(
            f"\ngoals: uniform@4 >= 1000/s: {goal['tps']:.0f} ({'met' if goal['tps'] >= 1000 else 'NOT met'}); "
            f"ratio >= 0.35: {ratio:.2f} ({'met' if ratio >= 0.35 else 'NOT met'}); "
            f"hot errors == 0: {sum(figures[('hot', n)]['errors'] for n in levels):.0f}"
        )


if __name__ == "__main__":
    main()
