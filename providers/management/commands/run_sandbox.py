"""Serve the provider simulators in the foreground, configured from Django settings.

The embedded default (PROVIDERS_MODE=sandbox) points the Airtm client at
"{SANDBOX_URL}/airtm/v2" and the Trustless Work client at "{SANDBOX_URL}/trustless-work";
this command is what answers there. It seeds demo Airtm users
so a newcomer can top up (pay as payer@sandbox.test) and withdraw (to seller@sandbox.test)
right away, and sends Svix-signed webhooks to this orchestrator's Airtm webhook endpoint.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from providers.sandbox.embedded import Sandboxes


class Command(BaseCommand):
    help = "Serve the Airtm and Trustless Work sandbox simulators on one port."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--seed", default="0", help="seed of ids and random faults")

    def handle(self, *args: Any, **options: Any) -> None:
        sandboxes = Sandboxes(
            host=options["host"], port=options["port"], seed=options["seed"], access_log=True
        ).start()
        self.stdout.write("\n".join([*sandboxes.describe(), "(Ctrl-C stops)"]))
        self.stdout.flush()
        try:
            sandboxes.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            sandboxes.stop()
            self.stdout.write("Provider sandbox stopped.")
