"""The provider sandboxes as this orchestrator's settings describe them.

`manage.py run_sandbox` serves them in the foreground; `manage.py serve` (the embedded
default, `make run`) starts them on a thread beside the web server. Both get the same demo
Airtm users, so a newcomer can top up (pay as payer@sandbox.test) and withdraw (to
seller@sandbox.test) right away, and the same Svix-signed webhooks to our endpoint.

Trustless Work is served under /trustless-work with this orchestrator's API key, network
passphrase and USDC issuer, on a real clock, checking every signature. Escrow parties'
accounts and the treasury's test USDC are provisioned through its control API by
escrow.services.sandbox when an order needs them (sandbox mode only).
"""

import zlib
from decimal import Decimal
from typing import Any

from django.conf import settings

from providers.sandbox.airtm import AirtmSettings, AirtmSimulator
from providers.sandbox.server import SandboxServer, build_app
from providers.sandbox.trustless_work import TrustlessWorkSimulator

DEMO_USERS: tuple[dict[str, Any], ...] = (
    {
        "email": "payer@sandbox.test",
        "first_name": "Paula",
        "last_name": "Payer",
        "balance": Decimal("100000.00"),
    },
    {"email": "seller@sandbox.test", "first_name": "Samuel", "last_name": "Seller"},
    {
        "email": "unverified@sandbox.test",
        "first_name": "Uma",
        "last_name": "Unverified",
        "verified": False,
        "balance": Decimal("50.00"),
    },
    {
        "email": "us-payer@sandbox.test",
        "first_name": "Ursula",
        "last_name": "States",
        "country": "USA",
        "balance": Decimal("1000.00"),
    },
)
ENTERPRISE_BALANCE = Decimal("10000.00")


class Sandboxes:
    """The simulators behind one HTTP server; start() serves them on a thread."""

    def __init__(self, *, host: str, port: int, seed: str = "0", access_log: bool = False):
        self.webhook_url = f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/airtm"
        secrets = settings.AIRTM_WEBHOOK_SECRETS
        self.airtm = AirtmSimulator(
            api_key=settings.AIRTM_API_KEY,
            api_secret=settings.AIRTM_API_SECRET,
            seed=seed,
            settings=AirtmSettings(available=ENTERPRISE_BALANCE),
            webhook_url=self.webhook_url if secrets else None,
            webhook_secret=secrets[0] if secrets else None,
        )
        for user in DEMO_USERS:
            self.airtm.seed_user(**user)
        self.trustless_work = TrustlessWorkSimulator(
            seed=int(seed) if seed.isdigit() else zlib.crc32(seed.encode()),
            api_keys=(settings.TRUSTLESS_WORK_API_KEY,),
            network_passphrase=settings.STELLAR_NETWORK_PASSPHRASE,
            usdc_issuer=settings.STELLAR_USDC_ISSUER,
            clock="real",
        )
        self.server = SandboxServer(
            build_app({"/airtm": self.airtm, "/trustless-work": self.trustless_work}),
            host=host,
            port=port,
            access_log=access_log,
        )

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "Sandboxes":
        self.server.start()
        self.airtm.start_background()  # webhook retries and clock-driven outcomes
        return self

    def stop(self) -> None:
        self.airtm.close()
        self.trustless_work.release_holds()
        self.server.stop()

    def describe(self) -> list[str]:
        base = self.url
        has_webhooks = bool(settings.AIRTM_WEBHOOK_SECRETS)
        return [
            f"Provider sandbox on {base}",
            f"  Airtm API       {base}/airtm/v2  (Basic auth: AIRTM_API_KEY / AIRTM_API_SECRET)",
            f"  Airtm checkout  {base}/airtm/payin/<payin id>",
            f"  Airtm control   {base}/airtm/__sandbox/  (stats, users, faults, clock...)",
            f"  Webhooks to     {self.webhook_url if has_webhooks else '(none: no secret)'}",
            f"  Trustless Work  {base}/trustless-work  (x-api-key: TRUSTLESS_WORK_API_KEY; "
            f"USDC issuer {self.trustless_work.usdc_issuer})",
            f"  TW control      {base}/trustless-work/__sandbox/  (accounts, mint, faults...)",
            f"  Enterprise balance USD {ENTERPRISE_BALANCE}",
            "  Demo Airtm users:",
            *(
                f"    {u['email']:<26} balance USD {u.get('balance', Decimal('0')):>10}"
                f"{'' if u.get('verified', True) else '  (unverified: payouts go PENDING)'}"
                f"{'  (US: cannot pay in)' if u.get('country') == 'USA' else ''}"
                for u in DEMO_USERS
            ),
        ]
