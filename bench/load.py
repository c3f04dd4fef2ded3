"""Load scenarios against the API served as production serves it; the money must stay exact.

    .venv/bin/python bench/load.py [--scenarios baseline,hot,spike] [--seconds 30]
        [--clients 32] [--workers 5] [--profile-seconds 0]

On a fresh PostgreSQL database (offerhub_bench_load, or DATABASE_URL) it starts the provider
sandboxes (`manage.py run_sandbox`), one Celery worker and gunicorn (`--workers` sync
workers): DEBUG off, Redis for cache, rate limits, broker and SSE wake-ups, JSON logs, as the
Docker image runs. Then asyncio clients (aiohttp, one kept-alive connection each, no pause
between requests) drive the public API with one API key:

- baseline: `--clients` clients for `--seconds`, each request drawn from the mix below;
- hot:      the same number of clients all working on the same 4 buyers (reserve, cancel,
            balance): row-lock contention on their accounts;
- spike:    the baseline mix while clients ramp 2 -> `--clients` / 2 -> `--clients` ->
            2 x `--clients` in four equal steps (each step reported).

Baseline mix (weights): balance 25, user 5, order 10, order list 10, event log 10, statement 5,
order create + reserve 20 (two requests), cancel of one of the client's reserved orders 10,
top-up create 5 (a synchronous Airtm call to the sandbox). Airtm allows 10 requests/s per key
(the sandbox enforces it like Airtm), so the clients keep top-ups under 8/s, as a marketplace
would, and draw another operation when none is due. POSTs carry an Idempotency-Key. The
per-key rate limit is raised out of the way (its cost is measured, not its refusals).

Each scenario prints requests, req/s, p50/p95/p99 and the error rate, overall and per
operation. Then the money is checked: `manage.py verify_ledger` (balances recomputed from
postings, trial balance, hash chain), and each buyer's reserved balance must equal what the
clients saw reserved minus what they saw canceled, with nothing gone from their totals.
Exits 1 when the ledger is not exact or more than `--max-error-rate` of requests failed.
The goal printed is the upstream product's: API p95 <= 100 ms at 32 clients, baseline mix.
`--profile-seconds N` samples one gunicorn worker with py-spy for N seconds of the baseline
(needs `pip install py-spy`) and prints where its time goes.
"""

import argparse
import asyncio
import logging
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import support

QUEUE = f"bench-load-{os.getpid()}"
DB_URL = support.production_settings(
    database="offerhub_bench_load",
    redis_db=10,
    RATE_LIMIT_REQUESTS="100000000",
    CELERY_TASK_ALWAYS_EAGER="false",
    CELERY_TASK_DEFAULT_QUEUE=QUEUE,
    LOG_FORMAT="json",
)

import aiohttp  # noqa: E402
import django  # noqa: E402

BUYERS, SELLERS, HOT_BUYERS, SEED_ORDERS = 200, 20, 4, 200
FUNDS, AMOUNT = Decimal("1000000.00"), Decimal("1.00")
TOPUPS_PER_SECOND = 8.0
GOAL_P95_MS, GOAL_CLIENTS = 100.0, 32


@dataclass
class Sample:
    at: float  # seconds since the scenario started
    operation: str
    seconds: float
    ok: bool
    status: int  # 0: no answer (connection error, timeout)


@dataclass
class World:
    """What the clients share: the API key, the users, the orders and the money they moved."""

    key: str
    buyers: list[str]
    sellers: list[str]
    orders: list[str]
    reserved: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    uncertain: set[str] = field(default_factory=set)  # buyers with an answer we never got
    topup_budget: float = 0.0
    topup_at: float = 0.0

    def take_topup_slot(self) -> bool:
        """A token bucket at TOPUPS_PER_SECOND shared by every client (one event loop)."""
        now = time.monotonic()
        self.topup_budget = min(1.0, self.topup_budget + (now - self.topup_at) * TOPUPS_PER_SECOND)
        self.topup_at = now
        if self.topup_budget < 1.0:
            return False
        self.topup_budget -= 1.0
        return True


class Client:
    """One API client: a kept-alive connection, its own reserved orders, its samples."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        world: World,
        buyers: list[str],
        samples: list[Sample],
        started: float,
    ) -> None:
        self.session, self.world, self.buyers = session, world, buyers
        self.samples, self.started = samples, started
        self.mine: list[tuple[str, str]] = []  # (order id, buyer id) reserved by this client
        self.headers = {"Authorization": f"Bearer {world.key}"}

    async def call(
        self, operation: str, method: str, path: str, body: dict | None = None, expect: int = 200
    ) -> tuple[int, dict]:
        headers = self.headers
        if method == "POST":
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        begun = time.perf_counter()
        status, data = 0, {}
        try:
            async with self.session.request(method, path, json=body, headers=headers) as response:
                status = response.status
                data = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            pass
        ended = time.perf_counter()
        ok = status == expect
        self.samples.append(Sample(ended - self.started, operation, ended - begun, ok, status))
        return (status if ok else -status or -1), data

    # --- operations ---------------------------------------------------------------------------

    async def create_and_reserve(self, buyer: str) -> None:
        seller = random.choice(self.world.sellers)
        body = {"buyer_id": buyer, "seller_id": seller, "amount": str(AMOUNT), "title": "Load"}
        status, order = await self.call("order.create", "POST", "/api/v1/orders", body, 201)
        if status < 0:
            return
        self.world.orders.append(order["id"])
        status, _ = await self.call(
            "order.reserve", "POST", f"/api/v1/orders/{order['id']}/reserve"
        )
        if status > 0:
            self.world.reserved[buyer] += AMOUNT
            self.mine.append((order["id"], buyer))
        elif status in (-1, -500, -502, -503, -504):
            self.world.uncertain.add(buyer)  # the hold may or may not have been placed

    async def cancel(self) -> None:
        order_id, buyer = self.mine.pop(random.randrange(len(self.mine)))
        status, _ = await self.call(
            "order.cancel", "POST", f"/api/v1/orders/{order_id}/cancel", {"reason": "load"}
        )
        if status > 0:
            self.world.reserved[buyer] -= AMOUNT
        else:
            self.world.uncertain.add(buyer)

    async def baseline_step(self) -> None:
        buyer = random.choice(self.buyers)
        pick = random.randrange(100)
        if pick < 25:
            await self.call("balance.get", "GET", f"/api/v1/users/{buyer}/balance")
        elif pick < 30:
            await self.call("user.get", "GET", f"/api/v1/users/{buyer}")
        elif pick < 40:
            order = random.choice(self.world.orders)
            await self.call("order.get", "GET", f"/api/v1/orders/{order}")
        elif pick < 50:
            await self.call("order.list", "GET", f"/api/v1/orders?buyer_id={buyer}&limit=20")
        elif pick < 60:
            await self.call("event.log", "GET", "/api/v1/events/log?limit=20")
        elif pick < 65:
            await self.call("statement.get", "GET", f"/api/v1/users/{buyer}/transactions?limit=20")
        elif pick < 75 and self.mine:
            await self.cancel()
        elif pick >= 95 and self.world.take_topup_slot():
            body = {"user_id": buyer, "amount": "25.00", "currency": "USD"}
            await self.call("topup.create", "POST", "/api/v1/topups", body, 201)
        else:
            await self.create_and_reserve(buyer)

    async def hot_step(self) -> None:
        pick = random.randrange(100)
        if pick < 20:
            buyer = random.choice(self.buyers)
            await self.call("balance.get", "GET", f"/api/v1/users/{buyer}/balance")
        elif pick < 60 and self.mine:
            await self.cancel()
        else:
            await self.create_and_reserve(random.choice(self.buyers))

    async def run(self, step: Callable[[], object], until: float) -> None:
        while time.perf_counter() < until:
            await step()  # type: ignore[misc]


async def drive(
    base: str, world: World, scenario: str, schedule: list[tuple[float, int]]
) -> list[Sample]:
    """Run `scenario`'s clients: `schedule` lists (seconds, clients) steps; clients added at a
    step keep running to the end."""
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    buyers = world.buyers[:HOT_BUYERS] if scenario == "hot" else world.buyers
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        end = started + sum(seconds for seconds, _ in schedule)
        tasks: list[asyncio.Task[None]] = []
        step_end = started
        for seconds, clients in schedule:
            while len(tasks) < clients:
                client = Client(session, world, buyers, samples, started)
                step = client.hot_step if scenario == "hot" else client.baseline_step
                tasks.append(asyncio.create_task(client.run(step, end)))
            step_end += seconds
            await asyncio.sleep(max(0.0, step_end - time.perf_counter()))
        await asyncio.gather(*tasks)
    return samples


# --- Reporting ------------------------------------------------------------------------------


@dataclass
class Figures:
    requests: int
    rate: float
    p50: float
    p95: float
    p99: float
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def figures(samples: Iterable[Sample], seconds: float) -> Figures:
    rows = list(samples)
    ordered = sorted(s.seconds * 1000 for s in rows)
    return Figures(
        requests=len(rows),
        rate=len(rows) / seconds if seconds else 0.0,
        p50=support.percentile(ordered, 0.50),
        p95=support.percentile(ordered, 0.95),
        p99=support.percentile(ordered, 0.99),
        errors=sum(not s.ok for s in rows),
    )


HEADER = f"{'':<16}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"


def line(name: str, f: Figures) -> str:
    return (
        f"{name:<16}{f.requests:>9}{f.rate:>9.1f}{f.p50:>9.1f}{f.p95:>9.1f}{f.p99:>9.1f}"
        f"{f.error_rate:>7.1%}"
    )


def postgres_backends() -> list[int]:
    """Process ids of the PostgreSQL backends serving the benchmark's database."""
    import psycopg

    with psycopg.connect(DB_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def cpu_groups(processes: dict[str, int]) -> support.CpuAccount:
    """Each server's process tree, the database's backends, and these clients."""

    def tree(pid: int) -> Callable[[], list[int]]:
        return lambda: [pid, *support.children(pid)]

    groups = {name: tree(pid) for name, pid in processes.items()}
    return support.CpuAccount(
        {**groups, "postgres": postgres_backends, "clients": lambda: [os.getpid()]}
    )


def cpu_report(account: support.CpuAccount, requests: int) -> None:
    wall, used = account.used()
    machine = used.pop("machine")
    ours = sum(used.values())
    per_request = ", ".join(
        f"{name} {seconds / max(requests, 1) * 1000:.1f}" for name, seconds in used.items()
    )
    cores = os.cpu_count() or 1
    print(
        f"  CPU ms per request: {per_request} (total {ours / max(requests, 1) * 1000:.1f}); "
        f"machine busy {machine / wall / cores:.0%} of {cores} cores, "
        f"{max(0.0, machine - ours) / wall / cores:.0%} by other work"
    )


def report(scenario: str, samples: list[Sample], schedule: list[tuple[float, int]]) -> Figures:
    seconds = sum(s for s, _ in schedule)
    total = figures(samples, seconds)
    clients = "/".join(str(c) for _, c in schedule)
    print(f"\n{scenario}: {clients} clients, {seconds:g} s")
    print(HEADER)
    print(line("all", total))
    reads: list[Sample] = []
    writes: list[Sample] = []
    for sample in samples:
        (reads if sample.operation.endswith((".get", ".list", ".log")) else writes).append(sample)
    print(line("  reads", figures(reads, seconds)))
    print(line("  writes", figures(writes, seconds)))
    by_operation: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_operation[sample.operation].append(sample)
    for operation in sorted(by_operation):
        print(line(f"  {operation}", figures(by_operation[operation], seconds)))
    if len(schedule) > 1:
        begin = 0.0
        for step_seconds, clients_now in schedule:
            window = [s for s in samples if begin <= s.at < begin + step_seconds]
            print(line(f"  step {clients_now:>3} cl", figures(window, step_seconds)))
            begin += step_seconds
    failed = Counter(f"{s.operation} {s.status or 'no answer'}" for s in samples if not s.ok)
    if failed:
        print("  errors: " + ", ".join(f"{k} x{n}" for k, n in failed.most_common(8)))
    return total


# --- Setup and checks -------------------------------------------------------------------------


def setup() -> World:
    from escrow.services.orders import order_create
    from orchestrator.models import MarketplaceUser as User

    seeded = support.seed_marketplace(buyers=BUYERS, sellers=SELLERS, funds=str(FUNDS))
    buyers = [public_id for public_id, _ in seeded["buyers"]]
    sellers = [public_id for public_id, _ in seeded["sellers"]]
    users = {u.public_id: u for u in User.objects.filter(public_id__in=buyers + sellers)}
    from ledger.money import Money

    orders = [
        order_create(
            marketplace=users[buyers[0]].marketplace,
            buyer=users[buyers[n % BUYERS]],
            seller=users[sellers[n % SELLERS]],
            amount=Money.of(str(AMOUNT), "USD"),
            title="Seed order",
        )[0].public_id
        for n in range(SEED_ORDERS)
    ]
    return World(key=seeded["key"], buyers=buyers, sellers=sellers, orders=orders)


def statements_per_request(world: World) -> str:
    """SQL statements each operation runs, counted once in this process (a noise-free figure:
    each is a round trip to PostgreSQL, and under load a wait for a busy core)."""
    from django.db import connection
    from django.test import Client as TestClient
    from django.test.utils import CaptureQueriesContext

    client = TestClient(HTTP_AUTHORIZATION=f"Bearer {world.key}", SERVER_NAME="localhost")
    buyer, seller, counts = world.buyers[-1], world.sellers[0], {}

    def count(name: str, method: str, path: str, body: dict | None = None) -> dict:
        with CaptureQueriesContext(connection) as queries:
            if method == "get":
                response = client.get(path)
            else:  # as the clients send them: with an Idempotency-Key
                response = client.post(
                    path,
                    body or {},
                    content_type="application/json",
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
        counts[name] = len(queries)
        return response.json()

    body = {"buyer_id": buyer, "seller_id": seller, "amount": str(AMOUNT), "title": "Count"}
    order = count("order.create", "post", "/api/v1/orders", body)["id"]
    count("order.reserve", "post", f"/api/v1/orders/{order}/reserve")
    count("order.cancel", "post", f"/api/v1/orders/{order}/cancel", {"reason": "count"})
    count("balance.get", "get", f"/api/v1/users/{buyer}/balance")
    count("order.get", "get", f"/api/v1/orders/{order}")
    count("order.list", "get", f"/api/v1/orders?buyer_id={buyer}&limit=20")
    count("event.log", "get", "/api/v1/events/log?limit=20")
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def money_check(world: World) -> list[str]:
    """Each buyer's reserved balance is what the clients reserved less what they canceled,
    and available + reserved is still what the buyer was funded with."""
    from ledger.models import Account
    from orchestrator.models import MarketplaceUser as User

    problems = []
    balances: dict[str, dict[str, Decimal]] = defaultdict(dict)
    rows = Account.objects.filter(
        user__in=User.objects.filter(public_id__in=world.buyers), currency="USD"
    ).values_list("user__public_id", "kind", "balance")
    for user_id, kind, balance in rows:
        balances[user_id][kind] = balance
    for buyer in world.buyers:
        held = balances[buyer].get(Account.Kind.RESERVED, Decimal(0))
        total = balances[buyer].get(Account.Kind.AVAILABLE, Decimal(0)) + held
        if total != FUNDS:
            problems.append(f"{buyer}: available + reserved = {total}, funded {FUNDS}")
        if buyer not in world.uncertain and held != world.reserved[buyer]:
            problems.append(f"{buyer}: reserved {held}, the clients saw {world.reserved[buyer]}")
    return problems


def verify_ledger() -> tuple[bool, list[str]]:
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_ledger"],
        cwd=support.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip().splitlines()[-5:]


def profile(pid: int, seconds: float) -> None:
    """Sample one gunicorn worker with py-spy; print the functions it spends most time in."""
    out = Path(support.ROOT / "var" / f"load-profile-{pid}.txt")
    out.parent.mkdir(exist_ok=True)
    subprocess.run(  # noqa: S603 - py-spy from this virtualenv
        [
            str(support.BIN / "py-spy"),
            *("record", "--pid", str(pid), "--duration", str(int(seconds))),
            *("--format", "raw", "--output", str(out), "--nonblocking"),
        ],
        check=True,
        capture_output=True,
    )
    inside: Counter[str] = Counter()  # samples with the function anywhere on the stack
    leaf: Counter[str] = Counter()  # samples by what the innermost frame was doing
    total = 0
    for row in out.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        frames = [f.split(" (")[0] + " " + f.split("(")[-1].split(":")[0] for f in stack.split(";")]
        total += int(count)
        leaf[_activity(frames[-1])] += int(count)
        for frame in set(frames):
            if frame.split(" ")[-1].startswith(PROJECT):
                inside[frame] += int(count)
    print(f"\npy-spy, one web worker, {total} samples while busy; innermost frame:")
    print("  " + ", ".join(f"{name} {n / total:.0%}" for name, n in leaf.most_common()))
    print("  time inside the project's functions (nested: shares overlap):")
    for frame, n in [(f, n) for f, n in inside.most_common(40) if n / total < 0.85][:20]:
        print(f"  {n / total:>6.1%}  {frame}")
    print(f"  (raw stacks in {out})")


PROJECT = ("orchestrator/", "ledger/", "providers/", "escrow/", "webhooks/")


def _activity(frame: str) -> str:
    module = frame.split(" ")[-1]
    for prefix, name in (
        ("psycopg", "waiting for PostgreSQL"),
        ("redis", "Redis"),
        ("gunicorn", "gunicorn (HTTP)"),
        ("kombu", "Celery publishing"),
        ("celery", "Celery publishing"),
    ):
        if module.startswith(prefix):
            return name
    return "Python (Django, DRF, the project)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default="baseline,hot,spike")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=GOAL_CLIENTS)
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers")
    parser.add_argument("--max-error-rate", type=float, default=0.01)
    parser.add_argument("--profile-seconds", type=float, default=0.0)
    args = parser.parse_args()

    support.fresh_database(DB_URL)
    django.setup()
    from django.db import connections

    logging.getLogger().setLevel(logging.WARNING)  # this process's own requests: no access lines
    world = setup()
    statements = statements_per_request(world)
    connections.close_all()
    sandbox_port, port = support.free_port(), support.free_port()
    os.environ["SANDBOX_URL"] = f"http://127.0.0.1:{sandbox_port}"
    os.environ["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    base = f"http://127.0.0.1:{port}"
    processes = [support.start_sandbox(sandbox_port), support.start_worker(QUEUE, pool="solo")]
    print(
        f"PostgreSQL {DB_URL}; Redis {os.environ['REDIS_URL']}; {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.2f} before; gunicorn {args.workers} sync workers, "
        f"1 Celery worker, provider sandboxes; clients: asyncio (aiohttp) in one process"
    )
    results: dict[str, Figures] = {}
    try:
        log = (support.ROOT / "var" / "load-server.log").open("wb")
        web = support.start_gunicorn(port, args.workers, stdout=log, stderr=log)
        processes.append(web)
        asyncio.run(drive(base, world, "baseline", [(3.0, args.clients)]))  # warm up
        n = args.clients
        schedules = {
            "baseline": [(args.seconds, n)],
            "hot": [(args.seconds, n)],
            "spike": [(args.seconds / 4, c) for c in (2, max(2, n // 2), n, 2 * n)],
        }
        servers = {"web": web.pid, "worker": processes[1].pid, "sandbox": processes[0].pid}
        for scenario in args.scenarios.split(","):
            account = cpu_groups(servers)
            samples = asyncio.run(drive(base, world, scenario, schedules[scenario]))
            results[scenario] = report(scenario, samples, schedules[scenario])
            cpu_report(account, len(samples))
        if args.profile_seconds:
            children = Path(f"/proc/{web.pid}/task/{web.pid}/children").read_text()
            worker_pid = int(children.split()[0])
            schedule = [(args.profile_seconds + 2, n)]
            asyncio.run(_profiled(base, world, schedule, worker_pid, args.profile_seconds))
    finally:
        for process in reversed(processes):
            support.stop(process)
    print(f"\nload average after: {os.getloadavg()[0]:.2f} (other work on the machine shows here)")
    print(
        f"SQL statements per request: {statements} (and one Redis round trip each for the rate limit)"
    )
    exit_code = _verdict(world, results, args)
    raise SystemExit(exit_code)


async def _profiled(
    base: str, world: World, schedule: list[tuple[float, int]], pid: int, seconds: float
) -> None:
    load = asyncio.create_task(drive(base, world, "baseline", schedule))
    await asyncio.sleep(1)
    await asyncio.to_thread(profile, pid, seconds)
    await load


def _verdict(world: World, results: dict[str, Figures], args: argparse.Namespace) -> int:
    code = 0
    ok, tail = verify_ledger()
    print(f"verify_ledger: {'OK' if ok else 'FAILED'} ({' / '.join(tail)})")
    problems = money_check(world)
    print(
        f"buyers' balances: {'exact' if not problems else f'{len(problems)} WRONG'} "
        f"({len(world.buyers)} buyers, {len(world.uncertain)} with an unknown outcome skipped)"
    )
    for problem in problems[:10]:
        print(f"  {problem}")
    if not ok or problems:
        code = 1
    for scenario, f in results.items():
        if f.error_rate > args.max_error_rate:
            print(f"{scenario}: error rate {f.error_rate:.2%} > {args.max_error_rate:.2%}")
            code = 1
    baseline = results.get("baseline")
    if baseline is not None:
        met = baseline.p95 <= GOAL_P95_MS
        print(
            f"goal: API p95 <= {GOAL_P95_MS:.0f} ms at {GOAL_CLIENTS} clients, baseline mix: "
            f"p95 {baseline.p95:.1f} ms at {args.clients} clients, {baseline.rate:.0f} req/s "
            f"-> {'met' if met and args.clients >= GOAL_CLIENTS else 'NOT met'}"
        )
    print(f"load run: {'PASSED' if code == 0 else 'FAILED'}")
    return code


if __name__ == "__main__":
    main()
