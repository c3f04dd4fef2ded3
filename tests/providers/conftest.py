"""Provider fixtures: the Airtm simulator on a real HTTP port, the settings pointing at it.

`airtm` serves the simulator in this process (tests drive it directly, the orchestrator's
client talks to it over HTTP). Webhooks are held by the simulator; `deliver_webhooks` posts
them, signed as the simulator signed them, to our endpoint through the test client.
`airtm_live` sends them for real to a live server and starts a real Celery worker.
"""

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings

from providers.clients.ratelimit import reset_local_buckets
from providers.sandbox.airtm import AirtmSettings, AirtmSimulator
from providers.sandbox.server import SandboxServer, build_app

API_KEY, API_SECRET = "test-airtm-key", "test-airtm-secret"


class AirtmSandbox:
    """The simulator plus its URL, with the few verbs the tests speak."""

    def __init__(self, sim: AirtmSimulator, url: str) -> None:
        self.sim = sim
        self.url = url
        self.public_base_url = ""
        self.replayed: set[str] = set()

    def payin(self, payin_id: str) -> dict[str, Any]:
        found = self.sim.payin(id=payin_id)
        assert found is not None
        return found

    def payout(self, payout_id: str) -> dict[str, Any]:
        found = self.sim.payout(id=payout_id)
        assert found is not None
        return found

    def pay(self, payin_id: str, email: str) -> str:
        """The payer confirms on the hosted checkout page; returns where Airtm redirects."""
        response = requests.post(
            f"{self.url}/airtm/payin/{payin_id}/confirm",
            data={"email": email},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text
        return response.headers["Location"]

    def api_fault(self, method: str, path: str, kind: str, times: int = 1) -> None:
        seconds = django_settings.AIRTM_READ_TIMEOUT + 1 if "timeout" in kind else 0.0
        self.sim.add_fault(kind=kind, method=method, path=path, times=times, seconds=seconds)

    def clear_faults(self) -> None:
        self.sim.clear_faults()

    def webhook_fault(self, kind: str, times: int = 1, event_type: str | None = None) -> None:
        self.sim.add_webhook_fault(
            kind=kind, times=times, event_types=(event_type,) if event_type else ()
        )

    def payout_outcome(self, email: str, status: Any, reason_code: str | None = None) -> None:
        self.sim.force_payout_outcome(email=email, status=status, reason_code=reason_code)

    def complete_user_action(self, email: str) -> None:
        self.sim.complete_user_action(email=email)

    def payout_count(self, code: str | None = None) -> int:
        if code is None:
            return int(self.sim.stats()["payouts"])
        return self.sim.payouts_created(code)

    def payin_count(self, code: str) -> int:
        return int(self.sim.stats()["payinsCreatedPerCode"].get(code, 0))

    def flush(self) -> None:
        self.sim.flush_webhooks()

    def delivery_statuses(self) -> list[int | None]:
        return [a.status_code for m in self.sim.webhook_messages() for a in m.attempts]


@pytest.fixture
def airtm(settings: Any) -> Iterator[AirtmSandbox]:
    secret = django_settings.AIRTM_WEBHOOK_SECRETS[0]
    sim = AirtmSimulator(
        api_key=API_KEY,
        api_secret=API_SECRET,
        seed="tests",
        settings=AirtmSettings(available=Decimal("100000.00")),
        webhook_secret=secret,
        rate_limit_per_second=None,
    )
    sim.seed_user(email="payer@airtm.test", balance="100000.00")
    sim.seed_user(email="poor@airtm.test", balance="10.00")
    sim.seed_user(email="seller@airtm.test")
    with SandboxServer(build_app({"/airtm": sim})) as server:
        settings.AIRTM_BASE_URL = f"{server.url}/airtm/v2"
        settings.AIRTM_CHECKOUT_URL = f"{server.url}/airtm/payin/{{id}}"
        settings.AIRTM_API_KEY, settings.AIRTM_API_SECRET = API_KEY, API_SECRET
        settings.AIRTM_READ_TIMEOUT = 1.0
        settings.AIRTM_RATE_LIMIT_PER_SECOND = 1000
        reset_local_buckets()
        yield AirtmSandbox(sim, server.url)
        sim.close()


@pytest.fixture
def deliver_webhooks(
    airtm: AirtmSandbox, client: Any, django_capture_on_commit_callbacks: Any
) -> Callable[[], list[dict[str, Any]]]:
    """Post every webhook the simulator has published since the last call to our endpoint,
    exactly as signed by the simulator, running the processing it queues."""
    from providers.sandbox.svix import sign

    secret = django_settings.AIRTM_WEBHOOK_SECRETS[0]

    def deliver() -> list[dict[str, Any]]:
        delivered = []
        airtm.sim.webhooks.release_held()
        # A message held back by an out_of_order fault goes after the others, as it would.
        messages = sorted(airtm.sim.webhook_messages(), key=lambda m: "out_of_order" in m.faults)
        for message in messages:
            key = f"{message.svix_id}:{message.seq}"
            if key in airtm.replayed or message.status == "held":
                continue
            airtm.replayed.add(key)
            if message.status == "dropped":
                continue
            stamp = int(airtm.sim.clock.wall())
            headers = {
                "HTTP_SVIX_ID": message.svix_id,
                "HTTP_SVIX_TIMESTAMP": str(stamp),
                "HTTP_SVIX_SIGNATURE": sign(
                    secret=secret, msg_id=message.svix_id, timestamp=stamp, body=message.body
                ),
            }
            with django_capture_on_commit_callbacks(execute=True):
                response = client.post(
                    "/api/v1/webhooks/airtm",
                    data=message.body,
                    content_type="application/json",
                    **headers,
                )
            assert response.status_code == 200, response.content
            delivered.append({"type": message.event_type, "id": message.svix_id})
        return delivered

    return deliver


@pytest.fixture
def _airtm_env(
    airtm: AirtmSandbox, live_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point this process's settings and the (yet to start) worker's environment at the
    simulator, and the simulator's webhooks at the live server."""
    settings.PUBLIC_BASE_URL = live_server.url
    airtm.public_base_url = live_server.url
    airtm.sim.set_webhook_endpoint(
        url=f"{live_server.url}/api/v1/webhooks/airtm",
        secret=django_settings.AIRTM_WEBHOOK_SECRETS[0],
    )
    for name in ("AIRTM_BASE_URL", "AIRTM_CHECKOUT_URL", "AIRTM_API_KEY", "AIRTM_API_SECRET"):
        monkeypatch.setenv(name, getattr(django_settings, name))
    monkeypatch.setenv("AIRTM_READ_TIMEOUT", "1.0")
    monkeypatch.setenv("PUBLIC_BASE_URL", live_server.url)
    monkeypatch.setenv("PROVIDER_JANITOR_STALE_SECONDS", "0")


@pytest.fixture
def airtm_live(_airtm_env: None, celery_worker: Any, airtm: AirtmSandbox) -> AirtmSandbox:
    return airtm
