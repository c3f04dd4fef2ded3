"""The seeded fault simulation: random marketplace traffic against the provider simulators,
with faults, checking the money invariants after every step (issue 8).

    python manage.py simulate --seed 1 --steps 10000

Modules: `world` (virtual clock, simulators, settings, API client), `net` (in-process
HTTP), `tasks` (Celery's queue, worker and beat on the virtual clock), `crashes` (process
deaths), `faults` (what a step may break), `ops` (what marketplaces and people do),
`checks` (the invariants), `runner` (steps, drain, digest), `report` (printing).

It lives in bench/ (beside the benchmarks) because it uses every app at once, which no
app may (DESIGN.md §2), and the test-only time-machine package; the management command
in orchestrator/ only parses arguments and prepares a scratch database.
"""

from collections.abc import Callable

from bench.simulation.runner import Report, Simulation


def simulate(
    *,
    seed: int,
    steps: int,
    checkpoint: int = 500,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run one seed in the current (empty, migrated) database; see bench.simulation.runner.
    `progress` is told at each checkpoint."""
    return Simulation(seed=seed, steps=steps, checkpoint=checkpoint, progress=progress).run()


__all__ = ["Report", "Simulation", "simulate"]
