"""What the benchmarks share: production-shaped settings, a scratch database, and the
server processes (gunicorn, uvicorn, a Celery worker, the provider sandboxes) they start.

Nothing here imports Django: a benchmark calls `production_settings()` before `django.setup()`
so that its own process and every server it starts read the same environment.
"""

import base64
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def production_settings(*, database: str, redis_db: int, **overrides: str) -> str:
    """Point this process at PostgreSQL database `database` (unless DATABASE_URL is set) and
    Redis db `redis_db` (unless REDIS_URL is set), with the settings production runs: DEBUG
    off (no query logging), real-looking secrets. Returns the database URL."""
    url = os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database}")
    os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{redis_db}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
    production_secrets()
    os.environ.update(overrides)
    return url


def production_secrets() -> None:
    """DEBUG off and the secrets production settings refuse to start without (throwaway ones)."""
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("STELLAR_KEY_ENCRYPTION_KEYS", base64.b64encode(os.urandom(32)).decode())
    os.environ.setdefault("WEBHOOK_SECRET_KEYS", base64.urlsafe_b64encode(os.urandom(32)).decode())


def fresh_database(url: str) -> None:
    """Drop and recreate the scratch database `url` (its name must start with offerhub_bench)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    if not name.startswith("offerhub_bench"):
        raise SystemExit(f"refusing to recreate {name!r}: name it offerhub_bench*")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start one of our own server commands in its own process group (see `stop`)."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        list(argv),
        cwd=ROOT,
        env=kwargs.pop("env", dict(os.environ)),
        start_new_session=True,
        **kwargs,
    )


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group (a server and the workers it forked), SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def wait_for_port(port: int, process: subprocess.Popen[Any], path: str = "") -> None:
    """Until 127.0.0.1:`port` accepts connections (and answers `path` with 200, if given)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited with {process.returncode}")
        try:
            if not path:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"nothing answered on port {port}")


def start_gunicorn(port: int, workers: int, **kwargs: Any) -> subprocess.Popen[Any]:
    """The web process as production runs it (sync workers), serving once it is healthy."""
    process = start(
        [
            str(BIN / "gunicorn"),
            *("-c", "python:orchestrator.gunicorn_config"),
            "orchestrator.wsgi:application",
            *("--bind", f"127.0.0.1:{port}", "--workers", str(workers)),
            *("--worker-class", "sync", "--backlog", "256", "--log-level", "warning"),
        ],
        **kwargs,
    )
    wait_for_port(port, process, "/api/v1/health")
    return process


def start_uvicorn(port: int) -> subprocess.Popen[Any]:
    return start(
        [
            sys.executable,
            *("-m", "uvicorn", "orchestrator.asgi:application", "--host", "127.0.0.1"),
            *("--port", str(port), "--log-level", "warning", "--no-access-log"),
            *("--timeout-graceful-shutdown", "1"),
        ]
    )


def start_worker(queue: str, *, pool: str = "solo", **kwargs: Any) -> subprocess.Popen[Any]:
    """A Celery worker consuming `queue` (tasks must be sent there: task_default_queue)."""
    log = os.environ.get("BENCH_WORKER_LOG")
    return start(
        [
            sys.executable,
            *("-m", "celery", "-A", "orchestrator", "worker", "-P", pool, "-Q", queue),
            *("-l", log or "WARNING", "--without-gossip", "--without-mingle"),
            "--without-heartbeat",
            *("-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h"),
        ],
        env={**os.environ, "CELERY_TASK_ALWAYS_EAGER": "false", **kwargs.pop("env", {})},
        stdout=subprocess.DEVNULL,
        stderr=None if log else subprocess.DEVNULL,
        **kwargs,
    )


def start_sandbox(port: int) -> subprocess.Popen[Any]:
    """The provider simulators (`manage.py run_sandbox`), as the sandbox profile serves them."""
    process = start(
        [sys.executable, "manage.py", "run_sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process


def seed_marketplace(*, buyers: int, sellers: int, funds: str) -> dict[str, Any]:
    """A marketplace with a write-scope API key and users funded as top-ups fund them (one
    ledger entry from Airtm's clearing account each). Returns the raw key and, for buyers
    and sellers, (user public id, available account pk) pairs."""
    from django.core.management import call_command

    from ledger.models import Account
    from ledger.money import Money
    from ledger.services import Leg, entry_post, system_account, user_account
    from orchestrator.services import api_key_create, marketplace_create, user_create

    call_command("migrate", verbosity=0)
    market = marketplace_create(name="bench", slug=f"bench-{uuid.uuid4().hex[:8]}")
    _, raw_key = api_key_create(
        marketplace=market, name="bench", scopes=["write"], environment="test"
    )
    clearing = system_account(
        marketplace_id=market.pk, code="provider_clearing:airtm", currency="USD"
    )
    money = Money.of(funds, "USD")
    users: list[tuple[str, int]] = []
    for n in range(buyers + sellers):
        user = user_create(marketplace=market, external_user_id=f"u{n}", email="", type="BOTH")[0]
        account = user_account(user=user, kind=Account.Kind.AVAILABLE, currency="USD")
        entry_post(
            marketplace_id=market.pk,
            reference=f"bench-fund:{user.public_id}",
            kind="topup",
            legs=[Leg.debit(clearing, money), Leg.credit(account, money)],
        )
        users.append((user.public_id, account.pk))
    return {"key": raw_key, "buyers": users[:buyers], "sellers": users[buyers:]}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used, from /proc (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuAccount:
    """CPU seconds used by named groups of processes between two readings, beside what the
    whole machine used: on a shared machine the rest is other people's work.

    `groups` maps a name to a function listing its process ids at reading time; a process
    that appears between readings counts from zero.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.start = self._read()

    def _read(self) -> tuple[float, dict[str, dict[int, float]]]:
        readings = {
            name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()
        }
        return time.monotonic(), readings | {"machine": {0: machine_busy_seconds()}}

    def used(self) -> tuple[float, dict[str, float]]:
        """(wall seconds, CPU seconds per group and for the whole machine) since creation."""
        began, before = self.start
        now, after = self._read()
        used = {
            name: sum(
                value - before[name].get(pid, 0.0)
                for pid, value in pids.items()
                if value == value  # NaN: gone
            )
            for name, pids in after.items()
        }
        return now - began, used


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending sequence (0.0 when it is empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction + 0.5) - 1))]
