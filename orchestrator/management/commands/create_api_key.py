from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orchestrator.context import Actor, acting_as
from orchestrator.models import Marketplace, Scope
from orchestrator.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a marketplace and print it. It is shown this once only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("marketplace", help="public id (mkt_…) or slug")
        parser.add_argument("--name", default="default")
        parser.add_argument(
            "--scopes", default="read,write", help=f"comma-separated: {','.join(Scope.values)}"
        )
        parser.add_argument("--environment", choices=["live", "test"], default=None)
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["marketplace"]
        marketplace = (
            Marketplace.objects.filter(public_id=ref).first()
            or Marketplace.objects.filter(slug=ref).first()
        )
        if marketplace is None:
            raise CommandError(f"No marketplace {ref!r}.")
        expires = options["expires_in_days"]
        from django.conf import settings

        with acting_as(Actor(kind="system", id="manage.py create_api_key")):
            _, raw = api_key_create(
                marketplace=marketplace,
                name=options["name"],
                scopes=[s.strip() for s in options["scopes"].split(",") if s.strip()],
                environment=options["environment"] or settings.API_KEY_ENVIRONMENT,
                expires_at=timezone.now() + timedelta(days=expires) if expires else None,
            )
        self.stdout.write(raw)
