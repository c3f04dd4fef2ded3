"""Re-seal the outbound webhook signing secrets with the first WEBHOOK_SECRET_KEYS key.

Rotating the key that seals them at rest (docs/operations.md): put a new Fernet key first in
WEBHOOK_SECRET_KEYS and keep the old one after it, restart every process, run this command,
then remove the old key. Marketplaces notice nothing: their secrets stay the same.
"""

from typing import Any

from django.core.management.base import BaseCommand

from webhooks.outbound import secrets_reseal


class Command(BaseCommand):
    help = "Re-seal every webhook signing secret with the first WEBHOOK_SECRET_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        count = secrets_reseal()
        self.stdout.write(self.style.SUCCESS(f"Re-sealed {count} webhook signing secret(s)."))
