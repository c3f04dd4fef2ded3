"""Escrow fixtures: a buyer and a seller, and the Trustless Work simulator on a real HTTP
port with the settings pointing at it (as the embedded sandbox serves it)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from orchestrator.models import Marketplace
from providers.sandbox.server import SandboxServer, build_app
from providers.sandbox.trustless_work import DEFAULT_API_KEY, Config, TrustlessWorkSimulator
from tests.escrow.support import create_order, status

# The Airtm simulator's fixtures, for the end-to-end flows that top up and withdraw.
from tests.providers.conftest import _airtm_env, airtm, airtm_live  # noqa: F401
from tests.providers.support import fund


@pytest.fixture
def tw(settings: Any) -> Iterator[TrustlessWorkSimulator]:
    """The simulator (checking every signature), served for this test only."""
    sim = TrustlessWorkSimulator(
        seed=11,
        usdc_issuer=django_settings.STELLAR_USDC_ISSUER,
        network_passphrase=django_settings.STELLAR_NETWORK_PASSPHRASE,
        config=Config(rate_limit=False),
    )
    with SandboxServer(build_app({"/trustless-work": sim})) as server:
        settings.TRUSTLESS_WORK_BASE_URL = f"{server.url}/trustless-work"
        settings.TRUSTLESS_WORK_API_KEY = DEFAULT_API_KEY
        settings.TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE = 100_000
        settings.TRUSTLESS_WORK_READ_TIMEOUT = 2.0
        settings.TRUSTLESS_WORK_CONFIRM_DELAYS = [0.0, 0.0, 0.0]
        yield sim
        sim.release_holds()


@pytest.fixture
def act(api: Any, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST to the API and run what it queued after commit (the chain steps), as the
    embedded mode does before answering; returns the answer's JSON."""

    def run(path: str, body: dict[str, Any] | None = None, status: int = 202) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(f"/api/v1{path}", body or {}, format="json")
        assert response.status_code == status, response.json()
        return response.json()

    return run


@pytest.fixture
def funded(api, act, buyer, seller, tw, marketplace):
    """An order of `amount` in progress (escrow funded), with the given fee and milestones."""

    def make(amount="120.00", fee_bps=0, milestones=None):
        Marketplace.objects.filter(pk=marketplace.pk).update(platform_fee_bps=fee_bps)
        marketplace.refresh_from_db()
        fund(buyer, "1000.00")
        extra = {"milestones": milestones} if milestones else {}
        order_id = create_order(api, buyer, seller, amount=amount, **extra)
        act(f"/orders/{order_id}/reserve", status=200)
        act(f"/orders/{order_id}/escrow/fund")
        assert status(order_id) == "IN_PROGRESS"
        return order_id

    return make


@pytest.fixture
def _tw_env(tw: TrustlessWorkSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the (yet to start) Celery worker's environment at the simulator, as `tw` points
    this process's settings."""
    for name in (
        "TRUSTLESS_WORK_BASE_URL",
        "TRUSTLESS_WORK_API_KEY",
        "TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE",
        "TRUSTLESS_WORK_READ_TIMEOUT",
    ):
        monkeypatch.setenv(name, str(getattr(django_settings, name)))
    monkeypatch.setenv("TRUSTLESS_WORK_CONFIRM_DELAYS", "0,0,0")
    monkeypatch.setenv("ESCROW_JANITOR_STALE_SECONDS", "0")
    monkeypatch.setenv("ESCROW_LEASE_SECONDS", "3")


@pytest.fixture
def tw_live(_tw_env: None, celery_worker: Any, tw: TrustlessWorkSimulator) -> Any:
    """The simulator, and a real Celery worker (on Redis) running the chain steps."""
    return celery_worker


@pytest.fixture
def both_live(request: pytest.FixtureRequest) -> Any:
    """Both simulators, and a worker whose environment points at both (set up in order)."""
    for name in ("_airtm_env", "_tw_env", "celery_worker"):
        request.getfixturevalue(name)
    return request.getfixturevalue("airtm")


@pytest.fixture
def tw_live_patient(request: pytest.FixtureRequest, settings: Any) -> Any:
    """`tw_live` with a worker that waits 30 s for Trustless Work's answers (so a test can
    kill it while it waits)."""
    request.getfixturevalue("tw")
    settings.TRUSTLESS_WORK_READ_TIMEOUT = 30.0
    request.getfixturevalue("_tw_env")
    return request.getfixturevalue("celery_worker")
