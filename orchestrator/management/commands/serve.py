"""`manage.py serve [addr:port]`: the embedded default in one process (what `make run` runs).

Starts, beside Django's development server: the provider sandboxes (when PROVIDERS_MODE is
"sandbox", on SANDBOX_URL's port) and the periodic tasks Celery beat would run. Production
runs gunicorn, an ASGI server, Celery worker and beat instead (docker-compose.yml).
"""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from orchestrator.embedded import PeriodicTasks


class Command(BaseCommand):
    help = "Run the embedded default: web server, provider sandboxes and periodic tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-sandbox", action="store_true", help="Do not start the sandboxes.")

    def handle(self, *args: Any, **options: Any) -> None:
        sandbox = None
        if settings.PROVIDERS_MODE == "sandbox" and not options["no_sandbox"]:
            from providers.sandbox.embedded import Sandboxes

            where = urlsplit(settings.SANDBOX_URL)
            sandbox = Sandboxes(host=where.hostname or "127.0.0.1", port=where.port or 8001)
            self.stdout.write("\n".join(sandbox.start().describe()))
        beat = PeriodicTasks()
        if settings.CELERY_TASK_ALWAYS_EAGER:
            beat.start()
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            beat.stop()
            if sandbox is not None:
                sandbox.stop()
