"""The README's first command, `make run`, on the embedded default, as a newcomer runs it.

(The second command, `make test`, is what ran this test.)
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
KEY_LINE = re.compile(r"API key \(shown once\): (ohk_test_\S+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_key(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := KEY_LINE.search(line):
            return match.group(1)
    raise AssertionError("make run printed no API key:\n" + "".join(seen))


def _wait_for_health(base: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("the server did not answer /api/v1/health")


def test_make_run_serves_the_api_on_the_embedded_default(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL")
    }
    env["VAR_DIR"] = str(tmp_path)  # a fresh SQLite database, as on a new machine
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        key = _wait_for_key(process, deadline)
        base = f"http://127.0.0.1:{port}"
        _wait_for_health(base, deadline)
        headers = {"Authorization": f"Bearer {key}"}

        body = {"external_user_id": "newcomer"}
        created = requests.post(f"{base}/api/v1/users", json=body, headers=headers, timeout=10)
        listed = requests.get(f"{base}/api/v1/users", headers=headers, timeout=10)
        ready = requests.get(f"{base}/api/v1/health/ready", timeout=10)
        user = created.json()["id"]
        # The ledger on SQLite: the embedded mode runs its portable SQL path.
        credit = {"amount": "500.00", "currency": "USD", "reason": "first run"}
        credited = requests.post(
            f"{base}/api/v1/users/{user}/balance/credit", json=credit, headers=headers, timeout=10
        )
        debit = {"amount": "500.01", "currency": "USD", "reason": "too much"}
        refused = requests.post(
            f"{base}/api/v1/users/{user}/balance/debit", json=debit, headers=headers, timeout=10
        )
        balance = requests.get(f"{base}/api/v1/users/{user}/balance", headers=headers, timeout=10)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    verify = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "verify_ledger"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert created.status_code == 201
    assert [user["external_user_id"] for user in listed.json()["data"]] == ["newcomer"]
    assert ready.json()["checks"]["redis"]["status"] == "not_configured"
    assert credited.status_code == 200
    assert refused.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert balance.json()["balances"][0]["available"] == "500.00"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ledger OK" in verify.stdout
    assert (tmp_path / "orchestrator.sqlite3").exists()
