from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from orchestrator.context import Actor, acting_as
from orchestrator.services import marketplace_create


class Command(BaseCommand):
    help = "Create a marketplace (tenant) and print its public id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", required=True)
        parser.add_argument("--platform-fee-bps", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        with acting_as(Actor(kind="system", id="manage.py create_marketplace")):
            marketplace = marketplace_create(
                name=options["name"],
                slug=options["slug"],
                platform_fee_bps=options["platform_fee_bps"],
            )
        self.stdout.write(marketplace.public_id)
