from typing import Any

from django.core.management.base import BaseCommand

from orchestrator.context import Actor, acting_as
from orchestrator.models import Marketplace, Scope
from orchestrator.services import api_key_create, marketplace_create

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create the demo marketplace if missing and print a fresh all-scopes API key for it."

    def handle(self, *args: Any, **options: Any) -> None:
        with acting_as(Actor(kind="system", id="manage.py bootstrap_demo")):
            marketplace = Marketplace.objects.filter(slug=DEMO_SLUG).first() or marketplace_create(
                name="Demo marketplace", slug=DEMO_SLUG, platform_fee_bps=250
            )
            _, raw = api_key_create(
                marketplace=marketplace,
                name="demo (make run)",
                scopes=list(Scope.values),
                environment="test",
            )
        self.stdout.write(self.style.SUCCESS(f"Demo marketplace: {marketplace.public_id}"))
        self.stdout.write(self.style.SUCCESS(f"API key (shown once): {raw}"))
        self.stdout.write(
            f'Try: curl -H "Authorization: Bearer {raw}" http://127.0.0.1:8000/api/v1/users'
        )
