"""The Airtm sandbox simulator, driven over real HTTP as the orchestrator's client drives it.

No database: every test talks to a SandboxServer on a free port. Webhooks go to a small
receiver served the same way, and every signature is checked with the vendor's own `svix`
library, not with the simulator's code. Simulated time only moves when a test advances it
(the simulator's wall clock is frozen), so retry and expiry schedules are asserted exactly.
"""

import base64
import hashlib
import hmac
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from svix.webhooks import Webhook, WebhookVerificationError
from werkzeug.wrappers import Request, Response

from providers.sandbox.airtm import AirtmSettings, AirtmSimulator
from providers.sandbox.server import SandboxServer, build_app
from providers.sandbox.svix import RETRY_DELAYS
from providers.sandbox.wire import dumps
from tests.worker import wait_until

KEY, SECRET = "sim-key", "sim-secret"
WHSEC = "whsec_" + base64.b64encode(b"sandbox-test-webhook-secret-0001").decode()
ROOT = Path(__file__).resolve().parents[2]
DAY = 86400


class FrozenWall:
    """A wall clock that stands still: simulated time moves only through advance()."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Api:
    """requests against the simulator mount, bodies written with exact JSON numbers."""

    def __init__(self, root: str, *, auth: tuple[str, str] | None = (KEY, SECRET)) -> None:
        self.root = root
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.auth = auth

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)  # redirects lead off 127.0.0.1
        return self.session.get(self.root + path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)  # redirects lead off 127.0.0.1
        if body is not None:
            kwargs["data"] = dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        return self.session.post(self.root + path, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)  # redirects lead off 127.0.0.1
        return self.session.put(self.root + path, data=dumps(body), **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)  # redirects lead off 127.0.0.1
        return self.session.delete(self.root + path, **kwargs)


def data(response: requests.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def error(response: requests.Response) -> tuple[int, str]:
    return response.status_code, data(response)["code"]


def payin_body(code: str = "topup-1", amount: str = "10.00", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "amount": Decimal(amount),
        "description": "Wallet top-up",
        "items": [{"description": "Top-up", "amount": Decimal(amount), "quantity": 1}],
        "confirmationUri": "https://market.test/topups/done?src=airtm",
        "cancelUri": "https://market.test/topups/cancel",
    }
    body.update(changes)
    return body


def payout_body(code: str = "wd-1", email: str = "seller@sandbox.test", **changes: Any) -> dict:
    body: dict[str, Any] = {
        "airtmUserEmail": email,
        "amount": Decimal("25.00"),
        "notes": "Marketplace withdrawal",
        "code": code,
    }
    body.update(changes)
    return body


@pytest.fixture
def make_sim() -> Iterator[Callable[..., AirtmSimulator]]:
    made: list[AirtmSimulator] = []

    def make(**kwargs: Any) -> AirtmSimulator:
        kwargs.setdefault("seed", 7)
        kwargs.setdefault("settings", AirtmSettings(available=Decimal("1000.00")))
        kwargs.setdefault("wall", FrozenWall())
        kwargs.setdefault("rate_limit_per_second", None)
        kwargs.setdefault("monotonic", lambda: 0.0)  # a limiter window never ends by itself
        sim = AirtmSimulator(api_key=KEY, api_secret=SECRET, **kwargs)
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()


@pytest.fixture
def sim(make_sim: Callable[..., AirtmSimulator]) -> AirtmSimulator:
    simulator = make_sim()
    simulator.seed_user(email="payer@sandbox.test", balance="500.00", first_name="Paula")
    simulator.seed_user(email="seller@sandbox.test")
    return simulator


@pytest.fixture
def server(sim: AirtmSimulator) -> Iterator[SandboxServer]:
    with SandboxServer(build_app({"/airtm": sim})) as running:
        yield running


@pytest.fixture
def api(server: SandboxServer) -> Api:
    return Api(server.url + "/airtm")


@pytest.fixture
def browser(server: SandboxServer) -> Api:
    return Api(server.url + "/airtm", auth=None)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal)

    @property
    def msg_id(self) -> str:
        return self.headers.get("Svix-Id") or self.headers["Webhook-Id"]


@dataclass
class Receiver:
    """A webhook endpoint that records every request and answers from a script."""

    calls: list[Received] = field(default_factory=list)
    script: deque[int] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self.lock:
            self.calls.append(Received(headers=dict(request.headers), body=request.get_data()))
            status = self.script.popleft() if self.script else 204
        return Response(status=status)(environ, start_response)

    def types(self) -> list[str]:
        with self.lock:
            return [call.json["type"] for call in self.calls]


@pytest.fixture
def receiver(sim: AirtmSimulator) -> Iterator[Receiver]:
    hook = Receiver()
    with SandboxServer(hook) as running:
        sim.set_webhook_endpoint(url=running.url + "/webhooks/airtm", secret=WHSEC)
        yield hook


def verified(call: Received) -> Any:
    """The body, after the svix library accepted the signature (raises otherwise)."""
    Webhook(WHSEC).verify(call.body, call.headers)
    return call.json


def create_payin(api: Api, **kwargs: Any) -> dict[str, Any]:
    response = api.post("/v2/payins", payin_body(**kwargs))
    assert response.status_code == 200, response.text
    return data(response)


def create_payout(api: Api, **kwargs: Any) -> dict[str, Any]:
    response = api.post("/v2/payouts", payout_body(**kwargs))
    assert response.status_code == 200, response.text
    return data(response)


def balance(api: Api) -> dict[str, Decimal]:
    return data(api.get("/v2/me/balance"))


# --- auth, account, users ---------------------------------------------------------------------


def test_every_api_route_needs_the_basic_credentials(server: SandboxServer) -> None:
    root = server.url + "/airtm"

    anonymous = Api(root, auth=None).get("/v2/me")
    wrong = Api(root, auth=(KEY, "not-the-secret")).get("/v2/payouts")
    right = Api(root).get("/v2/me")

    assert error(anonymous) == (401, "415904")
    assert error(wrong) == (401, "415904")
    assert right.status_code == 200
    assert set(data(right)) == {
        "id",
        "cancelPendingPayoutsAfterDays",
        "payoutRequireIdVerification",
    }
    assert data(right)["cancelPendingPayoutsAfterDays"] == 90


def test_user_lookup_takes_the_email_url_encoded(api: Api, sim: AirtmSimulator) -> None:
    sim.seed_user(email="ana+shop@sandbox.test", verified=False, secondary_emails=["a@alt.test"])

    found = api.get("/v2/users/ana%2Bshop%40sandbox.test")
    secondary = api.get("/v2/users/a%40alt.test")
    unknown = api.get("/v2/users/nobody%40sandbox.test")

    assert found.status_code == 200
    assert data(found) == {
        "id": data(found)["id"],
        "status": "active",
        "primaryEmail": True,
        "firstName": "Sandbox",
        "lastName": "User",
        "country": "ARG",
        "isVerified": False,
    }
    assert data(secondary)["primaryEmail"] is False
    assert data(secondary)["id"] == data(found)["id"]
    assert error(unknown) == (404, "415902")


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({k: v for k, v in payin_body().items() if k != "cancelUri"}, (400, "415901")),
        (payin_body(currency="USD"), (400, "415901")),
        (payin_body(amount="10.00", items=[]), (400, "415901")),
        (payin_body(code=""), (400, "415901")),
        (payin_body(confirmationUri="not a url"), (400, "415901")),
        (payin_body(description="x" * 251), (400, "415901")),
        (payin_body(amount="10.00") | {"amount": "10.00"}, (400, "415901")),
        (payin_body() | {"amount": True}, (400, "415901")),
        (
            payin_body(
                items=[{"description": "a", "amount": Decimal("10.00"), "quantity": 1, "x": 1}]
            ),
            (400, "415901"),
        ),
        (
            payin_body(items=[{"description": "a", "amount": Decimal("10.00"), "quantity": 0}]),
            (400, "415901"),
        ),
        (
            payin_body(items=[{"description": "a", "amount": Decimal("9.99"), "quantity": 1}]),
            (400, "415906"),
        ),
        (payin_body(amount="10.001"), (400, "415906")),
        (payin_body(amount="0.00"), (400, "415901")),  # item amount below 0.01 first
        (
            payin_body(amount="0.00")
            | {"items": [{"description": "a", "amount": Decimal("0.01"), "quantity": 1}]},
            (400, "415906"),
        ),
    ],
    ids=[
        "missing-field",
        "extra-property",
        "no-items",
        "empty-code",
        "bad-uri",
        "long-description",
        "amount-as-string",
        "amount-as-bool",
        "item-extra-property",
        "item-quantity-zero",
        "items-do-not-sum",
        "three-decimals",
        "zero-item",
        "zero-amount",
    ],
)
def test_payin_validation(api: Api, body: dict, expected: tuple[int, str]) -> None:
    response = api.post("/v2/payins", body)

    assert error(response) == expected
    assert set(data(response)) <= {"code", "message", "data"}
    assert api.get("/v2/payins").json()["items"] == []


def test_payin_amounts_are_exact_decimals_on_the_wire(api: Api) -> None:
    # 0.10 x 3 is 0.30 exactly; as floats it is 0.30000000000000004 and would not sum.
    body = payin_body(
        amount="0.30",
        items=[{"description": "sticker", "amount": Decimal("0.10"), "quantity": 3}],
    )

    response = api.post("/v2/payins", body)

    assert response.status_code == 200, response.text
    assert '"amount":0.3,' in response.text
    assert data(response)["amount"] == Decimal("0.3")


def test_invalid_json_is_an_invalid_request_format(api: Api) -> None:
    response = api.session.post(
        api.root + "/v2/payins", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    nan = api.session.post(api.root + "/v2/payins", data=b'{"amount": NaN}', timeout=10)

    assert error(response) == (400, "415901")
    assert error(nan) == (400, "415901")


def test_a_body_over_one_megabyte_is_refused(api: Api) -> None:
    body = payin_body(description="x" * (1024 * 1024))

    response = api.post("/v2/payins", body)

    assert error(response) == (413, "415901")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"notes": None}, (400, "415901")),
        ({"currency": "USD"}, (400, "415901")),
        ({"airtmUserEmail": "not-an-email"}, (400, "415901")),
        ({"amount": Decimal("0.001")}, (400, "415035")),
        ({"amount": Decimal("1.234")}, (400, "415906")),
        ({"enterpriseFee": Decimal("-1")}, (400, "415901")),
        ({"enterpriseFee": Decimal("25.00")}, (400, "415035")),
        ({"commit": "yes"}, (400, "415901")),
        ({"code": ""}, (400, "415901")),
    ],
    ids=[
        "missing-notes",
        "extra",
        "bad-email",
        "too-small",
        "three-decimals",
        "negative-fee",
        "fee-eats-all",
        "commit-string",
        "empty-code",
    ],
)
def test_payout_validation(api: Api, sim: AirtmSimulator, changes: dict, expected: tuple) -> None:
    body = payout_body()
    body.update(changes)
    body = {k: v for k, v in body.items() if v is not None}

    response = api.post("/v2/payouts", body)

    assert error(response) == expected
    assert balance(api)["available"] == Decimal("1000.00")
    assert sim.stats()["payouts"] == 0


# --- payins: create, hosted checkout, cancel, lookups ------------------------------------------


def test_payin_paid_through_the_hosted_checkout(
    api: Api, browser: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    sim.set_enterprise(payin_fee_percent="2.5")
    payin = create_payin(api, code="topup-42", amount="40.00")

    page = browser.get(f"/payin/{payin['id']}")
    alias = browser.get(f"/checkout/{payin['id']}")
    confirmed = browser.post(
        f"/payin/{payin['id']}/confirm",
        data={"email": "payer@sandbox.test"},
    )
    after = data(api.get(f"/v2/payins/{payin['id']}"))
    page_after = browser.get(f"/payin/{payin['id']}")
    again = browser.post(f"/payin/{payin['id']}/confirm", data={"email": "payer@sandbox.test"})
    sim.flush_webhooks()

    assert payin["status"] == "CREATED"
    assert payin["airtmFee"] == Decimal("1")
    assert payin["netAmount"] == Decimal("39")
    assert page.status_code == 200
    assert "Wallet top-up" in page.text
    assert "40.00" in page.text
    assert 'name="email"' in page.text
    assert "Confirm" in page.text
    assert "Cancel" in page.text
    assert alias.status_code == 200
    assert "Wallet top-up" in alias.text
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"] == (
        "https://market.test/topups/done?src=airtm&code=topup-42"
    )
    assert after["status"] == "CONFIRMED"
    assert after["airtmUserEmail"] == "payer@sandbox.test"
    assert after["airtmUserId"] == sim.user("payer@sandbox.test").id  # type: ignore[union-attr]
    assert sim.user("payer@sandbox.test").balance == Decimal("460.00")  # type: ignore[union-attr]
    assert balance(api) == {"available": Decimal("1039"), "pending": Decimal("0")}
    assert page_after.status_code == 410
    assert "already completed" in page_after.text
    assert again.status_code == 410
    assert sim.user("payer@sandbox.test").balance == Decimal("460.00")  # type: ignore[union-attr]
    assert receiver.types() == ["payin.created", "payin.confirmed"]
    assert verified(receiver.calls[1])["data"] == after


@pytest.mark.parametrize(
    ("payer", "reason"),
    [
        ("poor@sandbox.test", "User has insufficient balance"),
        ("us@sandbox.test", "US users cannot make payins"),
        ("gone@sandbox.test", "User is not active"),
        ("stranger@sandbox.test", "User not found"),
    ],
)
def test_a_payer_who_cannot_pay_fails_the_payin(
    api: Api, browser: Api, sim: AirtmSimulator, payer: str, reason: str
) -> None:
    sim.seed_user(email="poor@sandbox.test", balance="9.99")
    sim.seed_user(email="us@sandbox.test", balance="100", country="USA")
    sim.seed_user(email="gone@sandbox.test", balance="100", status="inactive")
    payin = create_payin(api, amount="10.00")

    response = browser.post(f"/payin/{payin['id']}/confirm", data={"email": payer})
    after = data(api.get(f"/v2/payins/{payin['id']}"))

    assert response.status_code == 302
    assert response.headers["Location"] == "https://market.test/topups/cancel?code=topup-1"
    assert after["status"] == "FAILED"
    assert after["failureReason"] == reason
    assert balance(api)["available"] == Decimal("1000.00")
    assert [m.event_type for m in sim.webhook_messages()] == ["payin.created", "payin.failed"]


def test_checkout_accepts_the_email_as_json_and_goes_through_processing(
    api: Api, browser: Api, sim: AirtmSimulator
) -> None:
    sim.set_enterprise(payin_processing_delay=30)
    payin = create_payin(api)

    response = browser.post(
        f"/checkout/{payin['id']}/confirm",
        body={"email": "PAYER@sandbox.test"},
    )
    during = data(api.get(f"/v2/payins/{payin['id']}"))["status"]
    available_during = balance(api)["available"]
    sim.advance(30)
    after = data(api.get(f"/v2/payins/{payin['id']}"))["status"]

    assert response.status_code == 302
    assert (during, available_during) == ("PROCESSING", Decimal("1000.00"))
    assert after == "CONFIRMED"
    assert balance(api)["available"] == Decimal("1010.00")


def test_checkout_cancel_and_api_cancel(api: Api, browser: Api, sim: AirtmSimulator) -> None:
    by_user = create_payin(api, code="a")
    by_api = create_payin(api, code="b")

    canceled = browser.post(f"/payin/{by_user['id']}/cancel")
    deleted = api.delete(f"/v2/payins/{by_api['id']}")
    deleted_again = api.delete(f"/v2/payins/{by_api['id']}")
    missing = api.delete("/v2/payins/00000000-0000-4000-8000-000000000000")
    late_confirm = browser.post(
        f"/payin/{by_user['id']}/confirm", data={"email": "payer@sandbox.test"}
    )

    assert canceled.status_code == 302
    assert canceled.headers["Location"] == "https://market.test/topups/cancel?code=a"
    assert data(api.get("/v2/payins/by-code/a"))["status"] == "CANCELED"
    assert data(deleted)["status"] == "CANCELED"
    assert error(deleted_again) == (422, "415032")
    assert error(missing) == (404, "415031")
    assert late_confirm.status_code == 410
    assert sim.user("payer@sandbox.test").balance == Decimal("500.00")  # type: ignore[union-attr]
    assert [m.event_type for m in sim.webhook_messages()] == [
        "payin.created",
        "payin.created",
        "payin.canceled",
        "payin.canceled",
    ]


def test_payin_lookups_and_duplicate_codes(api: Api, sim: AirtmSimulator) -> None:
    first = create_payin(api, code="topup-7")

    by_code = api.get("/v2/payins/by-code/topup-7")
    unknown = api.get("/v2/payins/by-code/nope")
    duplicate = api.post("/v2/payins", payin_body(code="topup-7", amount="99.00"))
    sim.set_enterprise(duplicate_code_status=400)
    duplicate_400 = api.post("/v2/payins", payin_body(code="topup-7"))

    assert data(by_code) == first
    assert error(unknown) == (404, "415031")
    assert error(duplicate) == (409, "415029")
    assert error(duplicate_400) == (400, "415029")
    assert sim.stats()["payinsCreatedPerCode"] == {"topup-7": 1}
    assert sim.stats()["payinCreateRequestsPerCode"] == {"topup-7": 3}


def test_lists_are_cursor_pages_with_filters(api: Api, browser: Api) -> None:
    ids = [create_payin(api, code=f"p{n}")["id"] for n in range(12)]
    browser.post(f"/payin/{ids[3]}/cancel")

    first = data(api.get("/v2/payins", params={"perPage": 10}))
    second = data(api.get("/v2/payins", params={"perPage": 10, "after": first["endCursor"]}))
    back = data(api.get("/v2/payins", params={"perPage": 10, "before": second["startCursor"]}))
    canceled = data(api.get("/v2/payins", params={"status": "CANCELED"}))
    too_small = api.get("/v2/payins", params={"perPage": 5})
    bad_status = api.get("/v2/payins", params={"status": "PAID"})
    bad_cursor = api.get("/v2/payins", params={"after": "%%%"})
    no_payouts = data(api.get("/v2/payouts"))

    assert [p["id"] for p in first["items"]] == ids[:10]
    assert [p["id"] for p in second["items"]] == ids[10:]
    assert [p["id"] for p in back["items"]] == ids[:10]
    assert [p["id"] for p in canceled["items"]] == [ids[3]]
    assert error(too_small) == (400, "415901")
    assert error(bad_status) == (400, "415901")
    assert error(bad_cursor) == (400, "415901")
    assert no_payouts == {"items": []}


# --- payouts ----------------------------------------------------------------------------------


def test_two_step_payout_to_a_verified_user_completes(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    sim.set_enterprise(payout_fee_percent="1")
    created = create_payout(api, amount=Decimal("100.00"), enterpriseFee=Decimal("5.00"))
    reserved = balance(api)

    committed = api.post(f"/v2/payouts/{created['id']}/commit")
    after = data(api.get(f"/v2/payouts/{created['id']}"))
    events = data(api.get(f"/v2/payouts/{created['id']}/events"))
    commit_again = api.post(f"/v2/payouts/{created['id']}/commit")
    cancel_completed = api.delete(f"/v2/payouts/{created['id']}")
    sim.flush_webhooks()

    assert created["status"] == "CREATED"
    assert (created["grossAmount"], created["amount"]) == (Decimal("100"), Decimal("95"))
    assert (created["airtmFee"], created["netAmount"]) == (Decimal("0.95"), Decimal("94.05"))
    assert created["airtmUserId"] == sim.user("seller@sandbox.test").id  # type: ignore[union-attr]
    assert reserved == {"available": Decimal("905"), "pending": Decimal("0")}
    assert committed.status_code == 204
    assert committed.content == b""
    assert after["status"] == "COMPLETED"
    assert [(e["previousStatus"], e["newStatus"]) for e in events] == [
        ("CREATED", "CREATED"),
        ("CREATED", "COMMITTED"),
        ("COMMITTED", "COMPLETED"),
    ]
    assert error(commit_again) == (422, "415027")
    assert error(cancel_completed) == (422, "415055")
    assert sim.user("seller@sandbox.test").balance == Decimal("94.05")  # type: ignore[union-attr]
    assert balance(api) == {"available": Decimal("905"), "pending": Decimal("0")}
    assert receiver.types() == ["payout.created", "payout.completed"]
    assert verified(receiver.calls[1])["data"] == after


def test_payout_to_an_unknown_email_waits_for_the_user(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    payout = create_payout(api, email="newbie@sandbox.test", commit=True)
    pending = balance(api)
    lookup = data(api.get("/v2/payouts/by-code/wd-1"))

    completed_ids = sim.complete_user_action(email="newbie@sandbox.test")
    after = data(api.get(f"/v2/payouts/{payout['id']}"))
    sim.flush_webhooks()

    assert payout["status"] == "PENDING"
    assert payout["reasonCode"] == "415912"
    assert payout["airtmUserId"] is None
    assert lookup == payout
    assert pending == {"available": Decimal("975"), "pending": Decimal("25")}
    assert completed_ids == [payout["id"]]
    assert after["status"] == "COMPLETED"
    assert after["airtmUserId"] == sim.user("newbie@sandbox.test").id  # type: ignore[union-attr]
    assert balance(api) == {"available": Decimal("975"), "pending": Decimal("0")}
    # Airtm has no webhook for PENDING.
    assert receiver.types() == ["payout.created", "payout.completed"]


@pytest.mark.parametrize(
    ("user", "changes"),
    [
        ({"verified": False}, {}),
        ({"status": "inactive"}, {}),
        ({"verified": False}, {"requireIdVerified": True}),
    ],
    ids=["unverified", "inactive", "id-required"],
)
def test_payouts_needing_user_action_are_pending(
    api: Api, sim: AirtmSimulator, user: dict, changes: dict
) -> None:
    sim.seed_user(email="kyc@sandbox.test", **user)

    payout = create_payout(api, email="kyc@sandbox.test", commit=True, **changes)

    assert payout["status"] == "PENDING"
    assert balance(api)["pending"] == Decimal("25")


def test_cancel_rules_and_refunds(api: Api, sim: AirtmSimulator) -> None:
    created = create_payout(api, code="a")
    pending = create_payout(api, code="b", email="newbie@sandbox.test", commit=True)
    completed = create_payout(api, code="c", commit=True)

    cancel_created = api.delete(f"/v2/payouts/{created['id']}")
    cancel_pending = api.delete(f"/v2/payouts/{pending['id']}")
    cancel_completed = api.delete(f"/v2/payouts/{completed['id']}")
    commit_canceled = api.post(f"/v2/payouts/{created['id']}/commit")
    missing = api.delete("/v2/payouts/00000000-0000-4000-8000-000000000000")

    assert data(cancel_created)["status"] == "CANCELED"
    assert data(cancel_pending)["status"] == "CANCELED"
    assert error(cancel_completed) == (422, "415055")
    assert error(commit_canceled) == (422, "415027")
    assert error(missing) == (404, "415005")
    assert balance(api) == {"available": Decimal("975"), "pending": Decimal("0")}
    assert [m.event_type for m in sim.webhook_messages()].count("payout.canceled") == 2


def test_enterprise_balance_limits_payouts(api: Api, sim: AirtmSimulator) -> None:
    sim.set_enterprise(available="30.00")

    first = api.post("/v2/payouts", payout_body(code="a", amount=Decimal("20.00")))
    refused = api.post("/v2/payouts", payout_body(code="b", amount=Decimal("10.01")))
    exact = api.post("/v2/payouts", payout_body(code="c", amount=Decimal("10.00")))

    assert first.status_code == 200
    assert error(refused) == (422, "415016")
    assert exact.status_code == 200
    assert balance(api)["available"] == Decimal("0")
    assert sim.payouts_created("b") == 0
    assert sim.stats()["payoutsCreatedPerCode"] == {"a": 1, "c": 1}


def test_duplicate_payout_code_creates_exactly_one_payout(api: Api, sim: AirtmSimulator) -> None:
    first = api.post("/v2/payouts", payout_body(code="wd-9"))
    second = api.post("/v2/payouts", payout_body(code="wd-9", amount=Decimal("1.00")))

    assert first.status_code == 200
    assert error(second) == (409, "415056")
    assert sim.payouts_created("wd-9") == 1
    assert sim.stats()["payoutCreateRequestsPerCode"] == {"wd-9": 2}
    assert balance(api)["available"] == Decimal("975")


def test_us_recipients_have_a_one_dollar_minimum(api: Api, sim: AirtmSimulator) -> None:
    sim.seed_user(email="us@sandbox.test", country="USA")

    small = api.post("/v2/payouts", payout_body(email="us@sandbox.test", amount=Decimal("0.99")))
    ok = api.post("/v2/payouts", payout_body(email="us@sandbox.test", amount=Decimal("1.00")))

    assert error(small) == (422, "415058")
    assert ok.status_code == 200


def test_forced_outcomes(api: Api, sim: AirtmSimulator, receiver: Receiver) -> None:
    sim.force_payout_outcome(email="seller@sandbox.test", status="FAILED")
    sim.force_payout_outcome(email="seller@sandbox.test", status="PENDING", reason_code="415103")

    failed = create_payout(api, code="a", commit=True)
    pending = create_payout(api, code="b", commit=True)
    normal = create_payout(api, code="c", commit=True)
    sim.flush_webhooks()

    assert (failed["status"], failed["reasonCode"]) == ("FAILED", "415073")
    assert (pending["status"], pending["reasonCode"]) == ("PENDING", "415103")
    assert normal["status"] == "COMPLETED"
    assert balance(api) == {"available": Decimal("950"), "pending": Decimal("25")}
    assert receiver.types() == [
        "payout.created",
        "payout.failed",
        "payout.created",
        "payout.created",
        "payout.completed",
    ]
    assert verified(receiver.calls[1])["data"]["reasonCode"] == "415073"


# --- the test clock ---------------------------------------------------------------------------


def test_payins_expire_after_fifteen_simulated_days(api: Api, sim: AirtmSimulator) -> None:
    payin = create_payin(api)

    sim.advance(15 * DAY - 1)
    before = data(api.get(f"/v2/payins/{payin['id']}"))["status"]
    sim.advance(1)
    after = data(api.get(f"/v2/payins/{payin['id']}"))

    assert before == "CREATED"
    assert after["status"] == "CANCELED"
    assert after["updatedAt"] != payin["updatedAt"]
    assert [m.event_type for m in sim.webhook_messages()] == ["payin.created", "payin.canceled"]


def test_pending_payouts_auto_cancel_and_refund(api: Api, sim: AirtmSimulator) -> None:
    sim.set_enterprise(cancel_pending_payouts_after_days=7)
    payout = create_payout(api, email="newbie@sandbox.test", commit=True)

    sim.advance(7 * DAY - 1)
    before = data(api.get(f"/v2/payouts/{payout['id']}"))["status"]
    sim.advance(1)
    after = data(api.get(f"/v2/payouts/{payout['id']}"))

    assert data(api.get("/v2/me"))["cancelPendingPayoutsAfterDays"] == 7
    assert before == "PENDING"
    assert after["status"] == "CANCELED"
    assert balance(api) == {"available": Decimal("1000.00"), "pending": Decimal("0")}
    assert sim.webhook_messages()[-1].event_type == "payout.canceled"


def test_delayed_completion_happens_on_the_clock(api: Api, sim: AirtmSimulator) -> None:
    sim.set_enterprise(payout_completion_delay=120)
    payout = create_payout(api, commit=True)

    sim.advance(119)
    before = data(api.get(f"/v2/payouts/{payout['id']}"))["status"]
    cancel_committed = api.delete(f"/v2/payouts/{payout['id']}")
    sim.advance(1)
    after = data(api.get(f"/v2/payouts/{payout['id']}"))["status"]

    assert payout["status"] == "COMMITTED"
    assert before == "COMMITTED"
    assert error(cancel_committed) == (422, "415055")
    assert after == "COMPLETED"


# --- API faults -------------------------------------------------------------------------------


def test_timeout_after_success_applies_the_change(api: Api, sim: AirtmSimulator) -> None:
    sim.add_fault(
        kind="timeout_after_success", method="POST", path="^/v2/payouts$", seconds=30, times=1
    )

    with pytest.raises(requests.ReadTimeout):
        api.post("/v2/payouts", payout_body(code="wd-t"), timeout=0.5)
    wait_until(lambda: api.get("/v2/payouts/by-code/wd-t").status_code == 200, timeout=10)
    retry = api.post("/v2/payouts", payout_body(code="wd-t"))

    assert error(retry) == (409, "415056")
    assert sim.payouts_created("wd-t") == 1


def test_plain_timeout_does_not_apply_the_change(api: Api, sim: AirtmSimulator) -> None:
    sim.add_fault(kind="timeout", method="POST", path="^/v2/payouts$", seconds=30, times=1)

    with pytest.raises(requests.ReadTimeout):
        api.post("/v2/payouts", payout_body(code="wd-t"), timeout=0.5)
    missing = api.get("/v2/payouts/by-code/wd-t")
    retry = api.post("/v2/payouts", payout_body(code="wd-t"))

    assert error(missing) == (404, "415005")
    assert retry.status_code == 200
    assert sim.payouts_created("wd-t") == 1


def test_connection_reset_answers_nothing(api: Api, sim: AirtmSimulator) -> None:
    sim.add_fault(kind="reset", path="^/v2/payouts$", times=1)

    with pytest.raises(requests.ConnectionError):
        api.post("/v2/payouts", payout_body())
    after = api.get("/v2/payouts/by-code/wd-1")

    assert error(after) == (404, "415005")


def test_reset_after_applying(api: Api, sim: AirtmSimulator) -> None:
    sim.add_fault(kind="reset", path="^/v2/payouts$", times=1, apply_first=True)

    with pytest.raises(requests.ConnectionError):
        api.post("/v2/payouts", payout_body())

    assert api.get("/v2/payouts/by-code/wd-1").status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "code"),
    [
        ("500", 500, "application/json", "415998"),
        ("502", 502, "text/html", None),
        ("503", 503, "text/html", None),
        ("429", 429, "application/json", "415903"),
        ("401", 401, "application/json", "415904"),
    ],
)
def test_error_faults(
    api: Api,
    sim: AirtmSimulator,
    kind: str,
    status: int,
    content_type: str,
    code: str | None,
) -> None:
    sim.add_fault(kind=kind, method="POST", path="/v2/payouts", times=1)

    faulted = api.post("/v2/payouts", payout_body())
    me = api.get("/v2/me")  # another route: not matched
    retried = api.post("/v2/payouts", payout_body())  # the rule was for one call

    assert faulted.status_code == status
    assert faulted.headers["Content-Type"].startswith(content_type)
    if code is not None:
        assert data(faulted)["code"] == code
    assert me.status_code == 200
    assert retried.status_code == 200
    assert sim.payouts_created("wd-1") == 1
    assert sim.stats()["faultsFired"] == 1


@pytest.mark.parametrize("apply_first", [False, True])
def test_malformed_and_empty_bodies(api: Api, sim: AirtmSimulator, apply_first: bool) -> None:
    sim.add_fault(kind="malformed_json", path="^/v2/payouts$", times=1, apply_first=apply_first)
    sim.add_fault(kind="empty_body", path="^/v2/me$", times=1)

    malformed = api.post("/v2/payouts", payout_body())
    empty = api.get("/v2/me")

    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.text)
    assert (empty.status_code, empty.content) == (200, b"")
    assert sim.payouts_created("wd-1") == (1 if apply_first else 0)


def test_latency_delays_a_normal_answer(api: Api, sim: AirtmSimulator) -> None:
    sim.add_fault(kind="latency", path="^/v2/me$", seconds=30, times=1)
    sim.add_fault(kind="latency", path="^/v2/me/balance$", seconds=0.01, times=1)

    with pytest.raises(requests.ReadTimeout):
        api.get("/v2/me", timeout=0.5)
    slow_but_fine = api.get("/v2/me/balance")

    assert slow_but_fine.status_code == 200
    assert sim.stats()["faultsFired"] == 2


def test_probabilistic_faults_repeat_under_the_same_seed(
    make_sim: Callable[..., AirtmSimulator],
) -> None:
    def pattern(seed: int) -> list[int]:
        sim = make_sim(seed=seed)
        sim.add_fault(kind="503", path="^/v2/me$", probability=0.5)
        with SandboxServer(build_app({"/airtm": sim})) as running:
            client = Api(running.url + "/airtm")
            return [client.get("/v2/me").status_code for _ in range(16)]

    first, again, other = pattern(11), pattern(11), pattern(12)

    assert first == again
    assert set(first) == {200, 503}
    assert first != other


def test_ids_repeat_under_the_same_seed(make_sim: Callable[..., AirtmSimulator]) -> None:
    def ids(seed: int) -> list[str]:
        sim = make_sim(seed=seed)
        with SandboxServer(build_app({"/airtm": sim})) as running:
            client = Api(running.url + "/airtm")
            payin = create_payin(client)
            payout = create_payout(client, email="x@sandbox.test")
            return [payin["id"], payin["hash"], payout["id"], data(client.get("/v2/me"))["id"]]

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)


def test_ten_requests_per_second_per_api_key(make_sim: Callable[..., AirtmSimulator]) -> None:
    now = [100.0]
    sim = make_sim(rate_limit_per_second=10, monotonic=lambda: now[0])
    with SandboxServer(build_app({"/airtm": sim})) as running:
        client = Api(running.url + "/airtm")
        other_key = Api(running.url + "/airtm", auth=("other-key", "x"))

        first_ten = [client.get("/v2/me").status_code for _ in range(10)]
        eleventh = client.get("/v2/me")
        other = other_key.get("/v2/me")
        now[0] += 0.999
        still_limited = client.get("/v2/me")
        now[0] += 0.002
        next_second = client.get("/v2/me")
        sim.set_rate_limit(per_second=None)
        unlimited = [client.get("/v2/me").status_code for _ in range(30)]

    assert first_ten == [200] * 10
    assert error(eleventh) == (429, "415903")
    assert error(other) == (401, "415904")  # its own bucket; then refused for its secret
    assert still_limited.status_code == 429
    assert next_second.status_code == 200
    assert unlimited == [200] * 30
    assert sim.stats()["rateLimited"] == 2


# --- webhooks ---------------------------------------------------------------------------------


def test_webhooks_are_svix_signed_and_carry_the_object_as_get_returns_it(
    api: Api, browser: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    payin = create_payin(api)
    browser.post(f"/payin/{payin['id']}/confirm", data={"email": "payer@sandbox.test"})

    attempts = sim.flush_webhooks()

    assert attempts == 2
    created, confirmed = (verified(call) for call in receiver.calls)
    assert created == {"type": "payin.created", "data": payin}
    assert confirmed == {
        "type": "payin.confirmed",
        "data": data(api.get(f"/v2/payins/{payin['id']}")),
    }
    for call in receiver.calls:
        assert call.headers["Svix-Id"].startswith("msg_")
        assert call.headers["Content-Type"] == "application/json"
        assert call.headers["Svix-Signature"].startswith("v1,")
    assert receiver.calls[0].msg_id != receiver.calls[1].msg_id
    assert all(m.status == "delivered" for m in sim.webhook_messages())


def test_failed_deliveries_retry_on_the_svix_schedule(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    receiver.script.extend([500, 500])
    create_payin(api)

    sim.flush_webhooks()
    sim.advance(4)
    after_4s = len(receiver.calls)
    sim.advance(1)
    after_5s = len(receiver.calls)
    sim.advance(299)
    after_304s = len(receiver.calls)
    sim.advance(1)

    assert after_4s == 1
    assert after_5s == 2
    assert after_304s == 2
    assert len(receiver.calls) == 3
    assert len({call.msg_id for call in receiver.calls}) == 1
    for call in receiver.calls:
        verified(call)  # each attempt carries its own timestamp and a valid signature
    [message] = sim.webhook_messages()
    assert message.status == "delivered"
    assert [a.status_code for a in message.attempts] == [500, 500, 204]


def test_a_receiver_that_never_answers_2xx_gets_eight_attempts(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    receiver.script.extend([503] * 20)
    create_payin(api)

    sim.advance(3 * DAY)

    [message] = sim.webhook_messages()
    times = [a.at for a in message.attempts]
    assert len(receiver.calls) == 8
    assert [round(b - a) for a, b in itertools.pairwise(times)] == list(RETRY_DELAYS)
    assert message.status == "failed"
    assert message.next_attempt_at is None


def test_manual_resend_keeps_the_svix_id(api: Api, sim: AirtmSimulator, receiver: Receiver) -> None:
    create_payin(api)
    sim.flush_webhooks()
    [message] = sim.webhook_messages()

    attempt = sim.resend_webhook(message.svix_id)

    assert attempt.ok
    assert attempt.manual
    assert [call.msg_id for call in receiver.calls] == [message.svix_id] * 2
    assert receiver.calls[0].body == receiver.calls[1].body


def test_duplicate_fault_sends_the_same_message_twice(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    sim.add_webhook_fault(kind="duplicate", event_types=["payin.*"], times=1)
    create_payin(api, code="a")
    create_payin(api, code="b")

    sim.flush_webhooks()

    first, copy, other = receiver.calls
    assert first.msg_id == copy.msg_id != other.msg_id
    assert first.body == copy.body
    assert [verified(call)["data"]["code"] for call in receiver.calls] == ["a", "a", "b"]


def test_duplicate_with_a_new_id(api: Api, sim: AirtmSimulator, receiver: Receiver) -> None:
    sim.add_webhook_fault(kind="duplicate_new_id", times=1)
    create_payin(api)

    sim.flush_webhooks()

    first, copy = receiver.calls
    assert first.msg_id != copy.msg_id
    assert verified(first) == verified(copy)


def test_out_of_order_holds_an_event_until_the_next_one_is_sent(
    api: Api, browser: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    sim.add_webhook_fault(kind="out_of_order", event_types=["payin.created"], times=1)
    payin = create_payin(api)
    sim.flush_webhooks()
    held = len(receiver.calls)

    browser.post(f"/payin/{payin['id']}/confirm", data={"email": "payer@sandbox.test"})
    sim.flush_webhooks()

    assert held == 0
    assert [verified(call)["type"] for call in receiver.calls] == [
        "payin.confirmed",
        "payin.created",
    ]


def test_drop_and_delay(api: Api, sim: AirtmSimulator, receiver: Receiver) -> None:
    sim.add_webhook_fault(kind="drop", event_types=["payout.created"], times=1)
    sim.add_webhook_fault(kind="delay", event_types=["payout.completed"], seconds=60)
    create_payout(api, commit=True)

    sim.flush_webhooks()
    before = receiver.types()
    sim.advance(59)
    still = receiver.types()
    sim.advance(1)

    assert before == still == []
    assert receiver.types() == ["payout.completed"]
    assert [m.status for m in sim.webhook_messages()] == ["dropped", "delivered"]


@pytest.mark.parametrize("kind", ["bad_signature", "wrong_secret"])
def test_signature_faults_fail_svix_verification(
    api: Api, sim: AirtmSimulator, receiver: Receiver, kind: str
) -> None:
    sim.add_webhook_fault(kind=kind, times=1)
    create_payin(api, code="a")
    create_payin(api, code="b")

    sim.flush_webhooks()

    faulty, fine = receiver.calls
    assert faulty.headers["Svix-Signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(faulty.body, faulty.headers)
    assert verified(fine)["data"]["code"] == "b"


def test_stale_timestamp_is_signed_but_too_old(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    sim.add_webhook_fault(kind="stale_timestamp", times=1)
    create_payin(api)

    sim.flush_webhooks()

    [call] = receiver.calls
    timestamp = int(call.headers["Svix-Timestamp"])
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    content = f"{call.msg_id}.{timestamp}.".encode() + call.body
    expected = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert call.headers["Svix-Signature"] == expected  # the signature itself is right
    assert time.time() - timestamp > 5 * 60
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(WHSEC).verify(call.body, call.headers)


def test_webhook_header_names(api: Api, sim: AirtmSimulator, receiver: Receiver) -> None:
    sim.add_webhook_fault(kind="webhook_headers", times=1)
    create_payin(api)

    sim.flush_webhooks()

    [call] = receiver.calls
    assert "Svix-Id" not in call.headers
    assert call.headers["Webhook-Id"].startswith("msg_")
    assert verified(call)["type"] == "payin.created"


def test_a_receiver_slower_than_the_timeout_counts_as_a_failure(
    make_sim: Callable[..., AirtmSimulator],
) -> None:
    sim = make_sim(webhook_timeout=0.3)
    release = threading.Event()
    answered: list[int] = []

    def stuck(environ: Any, start_response: Any) -> Iterable[bytes]:
        if not answered:
            answered.append(1)
            release.wait(30)  # the first attempt hangs until the test lets it go
        return Response(status=200)(environ, start_response)

    with (
        SandboxServer(stuck) as hook,
        SandboxServer(build_app({"/airtm": sim})) as running,
    ):
        sim.set_webhook_endpoint(url=hook.url + "/hook", secret=WHSEC)
        create_payin(Api(running.url + "/airtm"))
        sim.flush_webhooks()
        release.set()
        sim.advance(RETRY_DELAYS[0])

    [message] = sim.webhook_messages()
    first, second = message.attempts
    assert first.status_code is None
    assert "Timeout" in first.error
    assert second.status_code == 200
    assert message.status == "delivered"


def test_without_an_endpoint_nothing_is_sent(api: Api, sim: AirtmSimulator) -> None:
    create_payin(api)

    assert sim.flush_webhooks() == 0
    assert [m.status for m in sim.webhook_messages()] == ["no_endpoint"]


def test_the_background_thread_delivers_without_a_flush(
    make_sim: Callable[..., AirtmSimulator],
) -> None:
    sim = make_sim(wall=time.time)  # real time: the thread works on its own
    hook = Receiver()
    with (
        SandboxServer(hook) as hook_server,
        SandboxServer(build_app({"/airtm": sim})) as running,
    ):
        sim.set_webhook_endpoint(url=hook_server.url + "/hook", secret=WHSEC)
        sim.start_background(interval=0.05)
        create_payin(Api(running.url + "/airtm"))
        wait_until(lambda: len(hook.calls) == 1, timeout=10)
        sim.stop_background()

    assert verified(hook.calls[0])["type"] == "payin.created"


# --- control API ------------------------------------------------------------------------------


def test_control_api_mirrors_the_python_api(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    control = Api(api.root + "/__sandbox", auth=None)

    seeded = control.post(
        "/users",
        {"email": "ctl@sandbox.test", "verified": False, "balance": Decimal("12.34")},
    )
    enterprise = control.put("/enterprise", {"available": Decimal("50.00"), "payoutFeePercent": 2})
    fault = control.post("/faults", {"kind": "503", "path": "^/v2/me$", "times": 1})
    faulted = api.get("/v2/me")
    hook_fault = control.post("/webhooks/faults", {"kind": "drop", "eventTypes": ["*.failed"]})
    forced = control.post(
        "/payouts/force-outcome", {"email": "seller@sandbox.test", "status": "FAILED"}
    )
    failed = create_payout(api, commit=True)
    pending = create_payout(api, code="p", email="ctl@sandbox.test", commit=True)
    completed = control.post("/users/ctl%40sandbox.test/complete-action")
    flushed = control.post("/webhooks/flush")
    log = data(control.get("/webhooks"))
    resend = control.post(f"/webhooks/{log[0]['svixId']}/resend")
    advanced = control.post("/clock/advance", {"seconds": 3600})
    stats = data(control.get("/stats"))
    bad = control.post("/faults", {"kind": "explode"})
    unknown_field = control.post("/users", {"email": "x@sandbox.test", "mood": "happy"})

    assert seeded.status_code == 201
    assert data(seeded)["balance"] == Decimal("12.34")
    assert data(seeded)["isVerified"] is False
    assert data(enterprise)["available"] == Decimal("50")
    assert data(enterprise)["payoutFeePercent"] == Decimal("2")
    assert fault.status_code == 201
    assert faulted.status_code == 503
    assert forced.status_code == 200
    assert failed["status"] == "FAILED"
    assert pending["status"] == "PENDING"
    assert data(completed) == {"completedPayoutIds": [pending["id"]]}
    assert hook_fault.status_code == 201
    assert data(flushed)["attempts"] == 3  # created x2, completed; the failed one was dropped
    assert [entry["eventType"] for entry in log] == [
        "payout.created",
        "payout.failed",
        "payout.created",
        "payout.completed",
    ]
    assert log[1]["status"] == "dropped"
    assert data(resend)["statusCode"] == 204
    assert data(advanced)["offsetSeconds"] == Decimal("3600")
    assert stats["payoutsCreatedPerCode"] == {"wd-1": 1, "p": 1}
    assert stats["enterprise"] == {"available": Decimal("25"), "pending": Decimal("0")}
    assert stats["webhooks"]["delivered"] == 3
    assert bad.status_code == 400
    assert unknown_field.status_code == 400
    ctl_user = sim.user("ctl@sandbox.test")
    assert ctl_user is not None
    assert ctl_user.balance == Decimal("12.34") + Decimal("24.50")

    reset = control.post("/reset", {})
    assert reset.status_code == 200
    assert data(control.get("/stats"))["payouts"] == 0
    assert data(control.get("/users")) == []
    assert data(control.get("/clock"))["offsetSeconds"] == Decimal("0")


def test_control_routes_for_endpoint_faults_limits_and_held_events(
    api: Api, sim: AirtmSimulator, receiver: Receiver
) -> None:
    control = Api(api.root + "/__sandbox", auth=None)
    hook_url = sim.webhooks.url

    unset = control.put("/webhooks/endpoint", {"url": None, "secret": None})
    create_payin(api, code="lost")
    reset_endpoint = control.put("/webhooks/endpoint", {"url": hook_url, "secret": WHSEC})
    bad_secret = control.put("/webhooks/endpoint", {"url": hook_url, "secret": "whsec_***"})
    control.post("/faults", {"kind": "latency", "path": "^/v2/me$", "seconds": Decimal("0.01")})
    listed = data(control.get("/faults"))
    cleared = control.delete("/faults")
    limit = control.put("/rate-limit", {"perSecond": 1})
    one = api.get("/v2/me")
    two = api.get("/v2/me")
    control.put("/rate-limit", {"perSecond": None})
    control.post("/webhooks/faults", {"kind": "out_of_order", "times": 1})
    hook_faults = data(control.get("/webhooks/faults"))
    create_payin(api, code="held")
    held = data(control.post("/webhooks/flush"))["attempts"]
    released = data(control.post("/webhooks/release-held"))["attempts"]
    enterprise = data(control.get("/enterprise"))
    clock = data(control.get("/clock"))

    assert data(unset) == {"url": None, "hasSecret": False}
    assert data(reset_endpoint) == {"url": hook_url, "hasSecret": True}
    assert bad_secret.status_code == 400
    assert WHSEC not in reset_endpoint.text
    assert [(f["kind"], f["seconds"]) for f in listed] == [("latency", Decimal("0.01"))]
    assert cleared.status_code == 200
    assert data(control.get("/faults")) == []
    assert data(limit) == {"perSecond": 1}
    assert one.status_code == 200
    assert two.status_code == 429
    assert [f["kind"] for f in hook_faults] == ["out_of_order"]
    assert (held, released) == (0, 1)
    assert [verified(call)["data"]["code"] for call in receiver.calls] == ["held"]
    assert [m.status for m in sim.webhook_messages()] == ["no_endpoint", "delivered"]
    assert enterprise["available"] == Decimal("1000")
    assert enterprise["cancelPendingPayoutsAfterDays"] == 90
    assert enterprise["duplicateCodeStatus"] == 409
    assert clock["now"].endswith("Z")


# --- server and command -----------------------------------------------------------------------


def test_the_server_mounts_apps_by_prefix_and_stops_cleanly(sim: AirtmSimulator) -> None:
    def other(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["SCRIPT_NAME"].encode() + b"|" + environ["PATH_INFO"].encode()]

    server = SandboxServer(build_app({"/airtm": sim, "/trustless-work": other})).start()
    url = server.url
    airtm = Api(url + "/airtm").get("/v2/me")
    tw = requests.get(url + "/trustless-work/escrow/x", timeout=10)
    nothing = requests.get(url + "/elsewhere", timeout=10)
    server.stop()

    assert airtm.status_code == 200
    assert tw.text == "/trustless-work|/escrow/x"
    assert nothing.status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/airtm/v2/me", timeout=2)
    with pytest.raises(ValueError, match="mount prefix"):
        build_app({"airtm": sim})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_sandbox_serves_the_simulator_from_settings() -> None:
    from django.conf import settings

    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root = f"http://127.0.0.1:{port}/airtm"
    client = Api(root, auth=(settings.AIRTM_API_KEY, settings.AIRTM_API_SECRET))

    def answers() -> bool:
        try:
            return client.get("/v2/me", timeout=2).status_code == 200
        except requests.ConnectionError:
            assert process.poll() is None, "run_sandbox exited"
            return False

    try:
        wait_until(answers, timeout=60, interval=0.2)
        payer = data(client.get("/v2/users/payer%40sandbox.test"))
        funds = data(client.get("/v2/me/balance"))
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)

    assert payer["isVerified"] is True
    assert funds["available"] > 0
    assert f"http://127.0.0.1:{port}" in output
    assert "payer@sandbox.test" in output
    assert "seller@sandbox.test" in output
    assert settings.AIRTM_API_SECRET not in output
    assert "Provider sandbox stopped." in output
    assert process.returncode == 0
