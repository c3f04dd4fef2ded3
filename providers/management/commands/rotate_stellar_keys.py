from typing import Any

from django.core.management.base import BaseCommand

from providers.stellar.keys import stellar_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-wrap every Stellar key's data key with the current (first) master key of "
        "STELLAR_KEY_ENCRYPTION_KEYS. Afterwards the older master keys may be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = stellar_keys_rotate()
        self.stdout.write(self.style.SUCCESS(f"Re-wrapped {rotated} Stellar key(s)."))
