"""manage.py simulate: the seeded fault simulation of bench/simulation (a development tool).

It runs in a scratch database made like the test runner's (PostgreSQL: `test_<NAME>_simulation`,
dropped at the end unless --keep-db; SQLite: in memory), so a seed starts from the same
empty state every time and replays identically, and the development data is never touched.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections


@contextmanager
def scratch_database(*, keep: bool) -> Iterator[None]:
    connection = connections["default"]
    if connection.vendor == "postgresql":
        name = connection.settings_dict["NAME"]
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"test_{name}_simulation"
    original = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        if not keep:
            connection.creation.destroy_test_db(original, verbosity=0)


class Command(BaseCommand):
    help = (
        "Drive random API traffic (many users and marketplaces) against the provider "
        "simulators with faults, checking the money invariants after every step. "
        "A failing seed is printed with its replay command; exits non-zero on a failure."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--steps", type=int, default=1000)
        parser.add_argument("--runs", type=int, default=1, help="seeds seed .. seed+runs-1")
        parser.add_argument(
            "--checkpoint", type=int, default=500, help="run every check each N steps"
        )
        parser.add_argument("--log", type=Path, help="write each run's step log here")
        parser.add_argument("--keep-db", action="store_true", help="keep the scratch database")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["steps"] < 1 or options["runs"] < 1 or options["checkpoint"] < 1:
            raise CommandError("--steps, --runs and --checkpoint must be positive.")
        with scratch_database(keep=options["keep_db"]):
            for n in range(options["runs"]):
                if n:
                    call_command("flush", interactive=False, verbosity=0)
                if not self._run(options["seed"] + n, options):
                    raise CommandError(f"seed {options['seed'] + n} broke an invariant (above)")

    def _run(self, seed: int, options: dict[str, Any]) -> bool:
        try:
            from bench.simulation import simulate
            from bench.simulation.report import render
        except ImportError as exc:
            raise CommandError(
                f"The simulation needs the repository's bench/ and the dev dependencies "
                f"(make install-dev): {exc}"
            ) from exc
        report = simulate(
            seed=seed,
            steps=options["steps"],
            checkpoint=options["checkpoint"],
            progress=self.stderr.write,
        )
        for line in render(report):
            self.stdout.write(line)
        if options["log"] is not None:
            path = options["log"]
            if options["runs"] > 1:
                path = path.with_name(f"{path.stem}-{seed}{path.suffix}")
            path.write_text("\n".join(report.log) + "\n")
        return report.ok
