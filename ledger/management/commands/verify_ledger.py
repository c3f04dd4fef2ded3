from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.integrity import ledger_verify


class Command(BaseCommand):
    help = (
        "Recompute every balance from postings, check the trial balance and every marketplace's "
        "hash chain. Exits non-zero on any mismatch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-seal", action="store_true", help="do not seal pending entries before checking"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_verify(seal=not options["no_seal"])
        self.stdout.write(
            f"entries checked: {report.entries}, accounts checked: {report.accounts}, "
            f"sealed now: {report.sealed_now}"
        )
        for problem in report.problems:
            self.stdout.write(self.style.ERROR(problem))
        if not report.ok:
            raise CommandError(f"ledger verification failed: {len(report.problems)} problem(s)")
        self.stdout.write(self.style.SUCCESS("ledger OK"))
