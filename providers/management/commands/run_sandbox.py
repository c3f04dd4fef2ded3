"""Serve the provider simulators in the foreground, configured from Django settings.

The embedded default (PROVIDERS_MODE=sandbox) points the Airtm client at
"{SANDBOX_URL}/airtm/v2"; this command is what answers there. It seeds demo Airtm users
so a newcomer can top up (pay as payer@sandbox.test) and withdraw (to seller@sandbox.test)
right away, and sends Svix-signed webhooks to this orchestrator's Airtm webhook endpoint.
"""

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

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


class Command(BaseCommand):
    help = "Serve the Airtm sandbox simulator (and later Trustless Work) on one port."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--seed", default="0", help="seed of ids and random faults")

    def handle(self, *args: Any, **options: Any) -> None:
        webhook_url = f"{settings.PUBLIC_BASE_URL}/api/v1/webhooks/airtm"
        secrets = settings.AIRTM_WEBHOOK_SECRETS
        airtm = AirtmSimulator(
            api_key=settings.AIRTM_API_KEY,
            api_secret=settings.AIRTM_API_SECRET,
            seed=options["seed"],
            settings=AirtmSettings(available=ENTERPRISE_BALANCE),
            webhook_url=webhook_url if secrets else None,
            webhook_secret=secrets[0] if secrets else None,
        )
        for user in DEMO_USERS:
            airtm.seed_user(**user)
        server = SandboxServer(
            build_app({"/airtm": airtm}),
            host=options["host"],
            port=options["port"],
            access_log=True,
        )
        server.start()
        airtm.start_background()
        base = server.url
        lines = [
            f"Provider sandbox on {base} (Ctrl-C stops)",
            f"  Airtm API       {base}/airtm/v2  (Basic auth: AIRTM_API_KEY / AIRTM_API_SECRET)",
            f"  Airtm checkout  {base}/airtm/payin/<payin id>",
            f"  Airtm control   {base}/airtm/__sandbox/  (stats, users, faults, clock...)",
            f"  Webhooks to     {webhook_url if secrets else '(none: no AIRTM_WEBHOOK_SECRET)'}",
            f"  Enterprise balance USD {ENTERPRISE_BALANCE}",
            "  Demo Airtm users:",
            *(
                f"    {u['email']:<26} balance USD {u.get('balance', Decimal('0')):>10}"
                f"{'' if u.get('verified', True) else '  (unverified: payouts go PENDING)'}"
                f"{'  (US: cannot pay in)' if u.get('country') == 'USA' else ''}"
                for u in DEMO_USERS
            ),
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            airtm.close()
            server.stop()
            self.stdout.write("Provider sandbox stopped.")
