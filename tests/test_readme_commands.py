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
    env["SANDBOX_URL"] = f"http://127.0.0.1:{_free_port()}"  # the Airtm sandbox `make run` starts
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
        topped_up, withdrawn = _top_up_and_withdraw(base, headers)
        escrowed = _escrowed_order(base, headers)
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
    # The reference flow's first and last steps against the Airtm sandbox.
    assert topped_up == {"status": "TOPUP_SUCCEEDED", "available": "500.00"}
    assert withdrawn == {"status": "WITHDRAWAL_COMPLETED", "available": "300.00"}
    # The middle: an order escrowed on the Trustless Work sandbox and released (SQLite,
    # tasks in-process, accounts and treasury USDC provisioned in the simulator): the seller
    # gets 100 less Trustless Work's 0.3 % and the demo marketplace's 2.5 %.
    assert escrowed == {"status": "CLOSED", "outcome": "RELEASED", "seller": "97.20"}


def _top_up_and_withdraw(base: str, headers: dict[str, str]) -> tuple[dict[str, str], ...]:
    """Top up $500 through the Airtm checkout page, then withdraw $200 to Airtm."""
    user = requests.post(
        f"{base}/api/v1/users", json={"external_user_id": "freelancer"}, headers=headers, timeout=10
    ).json()["id"]
    topup = requests.post(
        f"{base}/api/v1/topups",
        json={"user_id": user, "amount": "500.00", "currency": "USD"},
        headers=headers,
        timeout=30,
    ).json()
    # The payer confirms on Airtm's hosted page and is sent back through our callback.
    back = requests.post(
        f"{topup['confirmation_uri']}/confirm",
        data={"email": "payer@sandbox.test"},
        allow_redirects=False,
        timeout=30,
    )
    requests.get(back.headers["Location"], timeout=30)
    topped = requests.get(f"{base}/api/v1/topups/{topup['id']}", headers=headers, timeout=10)
    after_topup = _available(base, headers, user)
    link = {"email": "seller@sandbox.test"}
    requests.post(f"{base}/api/v1/users/{user}/airtm/link", json=link, headers=headers, timeout=30)
    withdrawal = requests.post(
        f"{base}/api/v1/withdrawals",
        json={"user_id": user, "amount": "200.00", "commit": True},
        headers=headers,
        timeout=30,
    ).json()
    done = requests.post(
        f"{base}/api/v1/withdrawals/{withdrawal['id']}/refresh", headers=headers, timeout=30
    )
    return (
        {"status": topped.json()["status"], "available": after_topup},
        {"status": done.json()["status"], "available": _available(base, headers, user)},
    )


def _escrowed_order(base: str, headers: dict[str, str]) -> dict[str, str]:
    """Order $100 from the freelancer (topped up above), escrow it and release it."""

    def post(path: str, body: dict[str, object] | None = None) -> dict[str, object]:
        answer = requests.post(f"{base}/api/v1{path}", json=body or {}, headers=headers, timeout=60)
        assert answer.status_code < 300, answer.text
        result: dict[str, object] = answer.json()
        return result

    users = requests.get(f"{base}/api/v1/users", headers=headers, timeout=10).json()["data"]
    buyer = next(u["id"] for u in users if u["external_user_id"] == "freelancer")
    seller = str(post("/users", {"external_user_id": "designer"})["id"])
    order = str(
        post(
            "/orders",
            {"buyer_id": buyer, "seller_id": seller, "amount": "100.00", "title": "Logo"},
        )["id"]
    )
    for step in ("reserve", "escrow", "escrow/fund", "milestones/default/complete"):
        post(f"/orders/{order}/{step}")
    post(f"/orders/{order}/milestones/default/approve")
    post(f"/orders/{order}/resolution/release")
    done = requests.get(f"{base}/api/v1/orders/{order}", headers=headers, timeout=10).json()
    return {
        "status": done["status"],
        "outcome": done["outcome"],
        "seller": _available(base, headers, seller),
    }


def _available(base: str, headers: dict[str, str], user: str) -> str:
    balances = requests.get(f"{base}/api/v1/users/{user}/balance", headers=headers, timeout=10)
    return str(balances.json()["balances"][0]["available"])
