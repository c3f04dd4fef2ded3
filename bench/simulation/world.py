"""Everything a run stands on: the virtual clock, the two simulators, the in-process network,
the simulated Celery, the crash points, a marketplace webhook receiver and the API client.

`World.open(seed)` enters it all (settings overrides included) and leaves nothing behind.
Time: a frozen clock (time-machine) that only `World.advance` moves, for the orchestrator
(`timezone.now()`), the Airtm simulator (it reads `time.time()`) and the Trustless Work
simulator (its manual clock, moved in step). Randomness: the runner's `random.Random`,
and seeded RNGs derived from the seed for the simulators and the receiver.
"""

import base64
import hashlib
import hmac
import json
import random
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import time_machine
from django.conf import settings
from django.test import Client, override_settings

import escrow.services.common as escrow_common
import providers.services.common as provider_common
import webhooks.outbound as outbound
from bench.simulation.crashes import Crashes
from bench.simulation.net import ORCHESTRATOR_URL, SANDBOX_URL, InProcessNet
from bench.simulation.tasks import Beat, SimCelery, WorkerKilled
from orchestrator.models import Marketplace, Scope
from orchestrator.services import api_key_create, marketplace_create
from providers.clients.ratelimit import reset_local_buckets
from providers.clients.trustless_work import TrustlessWorkClient
from providers.sandbox.airtm import AirtmSettings, AirtmSimulator
from providers.sandbox.server import SandboxServer, build_app
from providers.sandbox.trustless_work import START_TIME, Config, TrustlessWorkSimulator

AIRTM_KEY, AIRTM_SECRET, TW_KEY = "sim-airtm-key", "sim-airtm-secret", "sim-tw-key"
ENTERPRISE_FLOAT = Decimal("100000000.00")  # the Airtm account's balance at the start
PAYER, POOR_PAYER = "payer@sim.test", "poor@sim.test"
MARKETPLACE_FEES_BPS = (0, 250, 500)


def _no_sleep(seconds: float) -> None:
    """Client back-off: no wall-clock wait (the virtual clock does not move either)."""


@dataclass
class Answer:
    """One answer of our API as the marketplace saw it (status None: the process died)."""

    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def code(self) -> str:
        data = self.json()
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return str(data["error"].get("code", ""))
        return ""


@dataclass
class Market:
    index: int
    marketplace: Marketplace
    key: str
    endpoint_path: str
    endpoint_secret: str = ""


class Receiver:
    """The marketplaces' webhook endpoint: verifies signatures, answers 2xx unless in an
    outage the runner staged, and remembers which event ids each marketplace received."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.outage = 0  # the next N requests answer 503
        self.received: dict[str, set[str]] = {}
        self.requests = 0
        self.bad_signatures = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        path = environ.get("PATH_INFO", "")
        msg_id = environ.get("HTTP_WEBHOOK_ID", "")
        stamp = environ.get("HTTP_WEBHOOK_TIMESTAMP", "")
        signatures = environ.get("HTTP_WEBHOOK_SIGNATURE", "").split()
        with self._lock:
            self.requests += 1
            secret = self.secrets.get(path, "")
            key = base64.b64decode(secret.removeprefix("whsec_")) if secret else b""
            signed = f"{msg_id}.{stamp}.".encode() + body
            digest = hmac.new(key, signed, hashlib.sha256).digest()
            expected = "v1," + base64.b64encode(digest).decode()
            if not any(hmac.compare_digest(s, expected) for s in signatures):
                self.bad_signatures += 1
            if self.outage > 0:
                self.outage -= 1
                status = "503 Service Unavailable"
            else:
                status = "200 OK"
                self.received.setdefault(path, set()).add(msg_id)
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.start = datetime.fromtimestamp(START_TIME, tz=UTC)
        self.elapsed = 0.0  # virtual seconds since the start
        self.airtm = AirtmSimulator(
            api_key=AIRTM_KEY,
            api_secret=AIRTM_SECRET,
            seed=f"{seed}:airtm",
            settings=AirtmSettings(available=ENTERPRISE_FLOAT),
            webhook_url=f"{ORCHESTRATOR_URL}/api/v1/webhooks/airtm",
            webhook_secret=settings.AIRTM_WEBHOOK_SECRETS[0],
            rate_limit_per_second=None,
        )
        self.airtm.seed_user(email=PAYER, balance=Decimal("1000000000.00"))
        self.airtm.seed_user(email=POOR_PAYER, balance=Decimal("1.00"))
        self.tw = TrustlessWorkSimulator(
            seed=seed,
            api_keys=(TW_KEY,),
            network_passphrase=settings.STELLAR_NETWORK_PASSPHRASE,
            usdc_issuer=settings.STELLAR_USDC_ISSUER,
            config=Config(rate_limit=False, indexer_lag_seconds=0.0),
        )
        self.crashes = Crashes()
        self.net = InProcessNet(
            build_app({"/airtm": self.airtm, "/trustless-work": self.tw}),
            on_kill=self.crashes.restore_leases,
        )
        # The simulators' stalls are recorded, never slept (see bench.simulation.net).
        self.airtm._sleep = self.net.stall  # type: ignore[method-assign]
        self.tw._hold = lambda fault: self.net.stall(fault.hold_seconds)  # type: ignore[method-assign]
        self.celery = SimCelery(now=self.now)
        self.beat = Beat(self.celery)
        self.receiver = Receiver()
        self.client = Client(raise_request_exception=False)
        self.markets: list[Market] = []
        self.server_errors = self.net.server_errors
        self.api_requests = 0
        self._idempotency = 0

    # --- time ---------------------------------------------------------------------------------

    def now(self) -> float:
        return START_TIME + self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds
        self._traveller.shift(seconds)
        self.tw.advance_clock(seconds)

    # --- setting up ---------------------------------------------------------------------------

    @contextmanager
    def open(self) -> Iterator["World"]:
        with ExitStack() as stack:
            self._traveller = stack.enter_context(time_machine.travel(self.start, tick=False))
            receiver = stack.enter_context(SandboxServer(self.receiver))
            stack.enter_context(override_settings(**self._settings()))
            stack.enter_context(self.net.active())
            stack.enter_context(self.celery.active())
            stack.enter_context(self.crashes.installed())
            stack.callback(self._forget_clients)
            self._forget_clients()
            provider_common.airtm_client()._sleep = _no_sleep
            escrow_common.tw_client()._sleep = _no_sleep
            self.beat.start()
            self._create_markets(receiver.url)
            yield self

    def _settings(self) -> dict[str, Any]:
        return {
            "DEBUG": False,
            "ALLOWED_HOSTS": ["testserver", "orchestrator.sim", "localhost", "127.0.0.1"],
            "PUBLIC_BASE_URL": ORCHESTRATOR_URL,
            "PROVIDERS_MODE": "sandbox",
            "ESCROW_SANDBOX_PROVISIONING": True,
            "AIRTM_BASE_URL": f"{SANDBOX_URL}/airtm/v2",
            "AIRTM_CHECKOUT_URL": f"{SANDBOX_URL}/airtm/payin/{{id}}",
            "AIRTM_API_KEY": AIRTM_KEY,
            "AIRTM_API_SECRET": AIRTM_SECRET,
            "AIRTM_READ_TIMEOUT": 10.0,
            "AIRTM_RATE_LIMIT_PER_SECOND": 1_000_000.0,
            "TRUSTLESS_WORK_BASE_URL": f"{SANDBOX_URL}/trustless-work",
            "TRUSTLESS_WORK_API_KEY": TW_KEY,
            "TRUSTLESS_WORK_READ_TIMEOUT": 30.0,
            "TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE": 1_000_000_000,
            "TRUSTLESS_WORK_CONFIRM_DELAYS": [0.0, 0.0, 0.0],
            "RATE_LIMIT_REQUESTS": 1_000_000_000,
            # Seal after each commit (a queued task per commit), never through a cache key
            # whose expiry is wall-clock time.
            "CELERY_TASK_ALWAYS_EAGER": True,
            "LEDGER_SEAL_ON_COMMIT": True,
            "WEBHOOK_TEST_MODE": True,
        }

    def _forget_clients(self) -> None:
        """A fresh process's caches: clients, rate buckets, opened webhook secrets (cached
        per endpoint row and version, which an earlier run in this process may share)."""
        outbound._opened.clear()
        provider_common._client.cache_clear()
        escrow_common._client.cache_clear()
        TrustlessWorkClient._buckets.clear()
        reset_local_buckets()

    def _create_markets(self, receiver_url: str) -> None:
        for index, fee in enumerate(MARKETPLACE_FEES_BPS, start=1):
            marketplace = marketplace_create(
                name=f"Simulated marketplace {index}",
                slug=f"sim-{self.seed}-{index}-{self.rng.getrandbits(32):08x}",
                platform_fee_bps=fee,
            )
            _, key = api_key_create(
                marketplace=marketplace,
                name="simulation",
                scopes=[Scope.READ, Scope.WRITE, Scope.SUPPORT, Scope.ADMIN],
                environment="test",
            )
            market = Market(index, marketplace, key, f"/m{index}")
            self.markets.append(market)
            answer = self.call(
                market,
                "POST",
                "/webhooks/endpoints",
                {"url": f"{receiver_url}{market.endpoint_path}", "event_types": ["*"]},
            )
            if answer.status != 201:
                raise RuntimeError(f"could not register the webhook endpoint: {answer.body!r}")
            market.endpoint_secret = str(answer.json()["secret"])
            self.receiver.secrets[market.endpoint_path] = market.endpoint_secret

    # --- our API ------------------------------------------------------------------------------

    def idempotency_key(self) -> str:
        self._idempotency += 1
        return f"sim-{self.seed}-{self._idempotency}"

    def call(
        self,
        market: Market,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Answer:
        """One request to /api/v1 with the marketplace's key."""
        headers = {"Authorization": f"Bearer {market.key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = b"" if body is None else json.dumps(body).encode()
        return self.request(method, f"/api/v1{path}", data, headers)

    def request(
        self, method: str, path: str, data: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        """One request to us; a death at a crash point in the web process is an answer with
        no status (the connection dropped)."""
        self.api_requests += 1
        try:
            response = self.client.generic(
                method, path, data=data, content_type="application/json", headers=headers
            )
        except WorkerKilled:
            self.crashes.restore_leases()
            return Answer(None)
        if response.status_code == 500:
            self.server_errors.append(f"{method} {path}: {response.content[:300]!r}")
        return Answer(response.status_code, response.content, dict(response.items()))
