from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ledger.reconciliation import ledger_reconcile


class Command(BaseCommand):
    help = (
        "Recompute every balance from postings, check the trial balance and every marketplace's "
        "hash chain, then the ledger against Airtm's and Trustless Work's records. Opens a "
        "reconciliation case per problem (once: a problem seen again is counted on its open "
        "case), clears the cases no longer seen, and exits non-zero on any mismatch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-seal", action="store_true", help="do not seal pending entries before checking"
        )
        parser.add_argument(
            "--remote",
            action="store_true",
            help="also read the providers (escrow balances on Trustless Work)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_reconcile(seal=not options["no_seal"], remote=options["remote"])
        verify, cases = report.verify, report.cases
        self.stdout.write(
            f"entries checked: {verify.entries}, accounts checked: {verify.accounts}, "
            f"sealed now: {verify.sealed_now}"
        )
        self.stdout.write(
            f"reconciliation cases: {cases.opened} opened, {cases.seen_again} seen again, "
            f"{cases.cleared} cleared"
        )
        for problem in report.problems:
            self.stdout.write(self.style.ERROR(problem))
        if not report.ok:
            raise CommandError(f"ledger verification failed: {len(report.problems)} problem(s)")
        self.stdout.write(self.style.SUCCESS("ledger OK"))
