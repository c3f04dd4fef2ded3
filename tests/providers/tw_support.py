"""Shared pieces of the Trustless Work tests: the simulator served over real HTTP on a
random port, the parties of an escrow (raw keypairs), and a tiny raw-HTTP helper.

Test modules import the fixtures they use (`from tests.providers.tw_support import ...`).
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import requests
from stellar_sdk import Keypair, Network, TransactionEnvelope

from providers import json_numbers
from providers.sandbox.server import SandboxServer
from providers.sandbox.trustless_work import DEFAULT_API_KEY, TrustlessWorkSimulator

TESTNET = Network.TESTNET_NETWORK_PASSPHRASE


@dataclass
class Parties:
    platform: Keypair  # deployer, platform address, release signer
    buyer: Keypair  # funder and approver
    seller: Keypair  # service provider and receiver
    resolver: Keypair  # dispute resolver
    outsider: Keypair  # holds no role


class TwHttp:
    """Raw HTTP to the simulator, and signing with raw keypairs."""

    def __init__(self, base_url: str, sim: TrustlessWorkSimulator) -> None:
        self.base_url, self.sim = base_url, sim

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = DEFAULT_API_KEY,
        timeout: float = 10,
        **kw: Any,
    ) -> requests.Response:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["x-api-key"] = key
        data = None if body is None else json_numbers.dumps(body)
        url = self.base_url + path
        return requests.request(method, url, data=data, headers=headers, timeout=timeout, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def build(self, path: str, body: Any, method: str = "POST") -> str:
        response = self.request(method, path, body)
        assert response.status_code == 201, response.text
        payload = json_numbers.loads(response.text)
        assert payload["status"] == "SUCCESS"
        return str(payload["unsignedTransaction"])

    @staticmethod
    def sign(xdr: str, keypair: Keypair, passphrase: str = TESTNET) -> str:
        envelope = TransactionEnvelope.from_xdr(xdr, passphrase)
        envelope.sign(keypair)
        return envelope.to_xdr()

    def send(self, signed_xdr: str, **kw: Any) -> requests.Response:
        return self.post("/helper/send-transaction", {"signedXdr": signed_xdr}, **kw)

    def run(self, path: str, body: Any, signer: Keypair, method: str = "POST") -> dict[str, Any]:
        """Build, sign, submit; assert it applied and return the submit answer."""
        response = self.send(self.sign(self.build(path, body, method), signer))
        assert response.status_code == 201, response.text
        result: dict[str, Any] = json_numbers.loads(response.text)
        assert result["status"] == "SUCCESS"
        return result

    def escrow(self, contract_id: str, *, on_chain: bool = False) -> dict[str, Any] | None:
        params = {"contractIds[]": contract_id, "signer": contract_id}
        if on_chain:
            params["validateOnChain"] = "true"
        response = self.get("/helper/get-escrow-by-contract-ids", params=params)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = json_numbers.loads(response.text)
        return found[0] if found else None


def tx_hash(xdr: str) -> str:
    return str(TransactionEnvelope.from_xdr(xdr, TESTNET).hash_hex())


def wait_for(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll until `condition()` holds; fail after `timeout` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def single_release_body(
    parties: Parties, sim: TrustlessWorkSimulator, **over: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "signer": parties.platform.public_key,
        "engagementId": "ord_test_1",
        "title": "Logo design",
        "description": "A logo in three colours",
        "roles": {
            "approver": parties.buyer.public_key,
            "serviceProvider": parties.seller.public_key,
            "platformAddress": parties.platform.public_key,
            "releaseSigner": parties.platform.public_key,
            "disputeResolver": parties.resolver.public_key,
            "receiver": parties.seller.public_key,
        },
        "amount": Decimal("100"),
        "platformFee": Decimal("2.5"),
        "milestones": [{"description": "Deliver the logo"}],
        "trustline": {"address": sim.usdc_issuer, "symbol": "USDC"},
    }
    body.update(over)
    return body


@pytest.fixture
def sim() -> Iterator[TrustlessWorkSimulator]:
    simulator = TrustlessWorkSimulator(seed=7)
    yield simulator
    simulator.release_holds()


@pytest.fixture
def tw(sim: TrustlessWorkSimulator) -> Iterator[TwHttp]:
    with SandboxServer(sim) as server:
        yield TwHttp(server.url, sim)
        sim.release_holds()


@pytest.fixture
def parties(sim: TrustlessWorkSimulator) -> Parties:
    made = Parties(*(Keypair.random() for _ in range(5)))
    for keypair in (made.platform, made.seller, made.resolver, made.outsider):
        sim.create_account(keypair.public_key)
    sim.create_account(made.buyer.public_key, usdc="1000")
    return made
