"""The provider sandboxes as this orchestrator's settings describe them.

`manage.py run_sandbox` serves them in the foreground; `manage.py serve` (the embedded
default, `make run`) starts them on a thread beside the web server. Both get the same demo
Airtm users, so a newcomer can top up (pay as payer@sandbox.test) and withdraw (to
seller@sandbox.test) right away, and the same Svix-signed webhooks to our endpoint.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings

from providers.sandbox.airtm import AirtmSettings, AirtmSimulator
from providers.sandbox.server import SandboxServer, build_app

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
        self.server = SandboxServer(
            build_app({"/airtm": self.airtm}), host=host, port=port, access_log=access_log
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
            f"  Enterprise balance USD {ENTERPRISE_BALANCE}",
            "  Demo Airtm users:",
            *(
                f"    {u['email']:<26} balance USD {u.get('balance', Decimal('0')):>10}"
                f"{'' if u.get('verified', True) else '  (unverified: payouts go PENDING)'}"
                f"{'  (US: cannot pay in)' if u.get('country') == 'USA' else ''}"
                for u in DEMO_USERS
            ),
        ]
