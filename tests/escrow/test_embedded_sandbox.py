"""The embedded default's sandbox (what `make run` and `manage.py run_sandbox` serve) can
deploy, fund, release and refund escrows out of the box: settings-derived key, passphrase
and USDC issuer, a real clock, and accounts and treasury USDC provisioned on first use."""

import socket

import pytest
import requests

from escrow.models import Escrow
from providers.sandbox.embedded import Sandboxes
from tests.escrow.support import create_order, get_order
from tests.providers.support import balance, fund, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def embedded(settings):
    port = _free_port()
    settings.SANDBOX_URL = f"http://127.0.0.1:{port}"
    settings.TRUSTLESS_WORK_BASE_URL = f"{settings.SANDBOX_URL}/trustless-work"
    settings.TRUSTLESS_WORK_CONFIRM_DELAYS = [0.0, 0.0, 0.0]
    sandboxes = Sandboxes(host="127.0.0.1", port=port).start()
    yield sandboxes
    sandboxes.stop()


def test_the_embedded_sandbox_runs_the_whole_escrow_flow(api, act, buyer, seller, embedded):
    sim = embedded.trustless_work
    fund(buyer, "300.00")
    released = create_order(api, buyer, seller, amount="100.00")
    refunded = create_order(api, buyer, seller, amount="50.00")

    for order_id in (released, refunded):
        act(f"/orders/{order_id}/reserve", status=200)
        act(f"/orders/{order_id}/escrow/fund")
    for action in ("complete", "approve"):
        act(f"/orders/{released}/milestones/default/{action}")
    act(f"/orders/{released}/resolution/release")
    act(f"/orders/{refunded}/resolution/refund")

    assert get_order(api, released)["status"] == "CLOSED"
    assert get_order(api, refunded)["outcome"] == "REFUNDED"
    assert balance(seller) == {"available": "99.70"}
    assert balance(buyer) == {"available": "200.00", "reserved": "0.00"}
    contract = Escrow.objects.get(order__public_id=released).contract_id
    assert sim.escrow_state(contract)["flags"]["released"] is True
    assert sim.clock.mode == "real"
    info = requests.get(f"{embedded.url}/trustless-work/__sandbox/info", timeout=5).json()
    assert info["usdcIssuer"] == sim.usdc_issuer
    assert any("Trustless Work" in line for line in embedded.describe())
    assert ledger_ok()
