"""The printed report of a run, and the quiet logging a run needs.

Faults make the product log warnings by the thousand (timeouts, retries); the run keeps
them off the console and counts what was logged at ERROR and above, by logger and
message template, for the report.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.simulation.runner import Report


class _Count(logging.Filter):
    def __init__(self, counter: Counter[str], examples: dict[str, str]) -> None:
        super().__init__()
        self.counter = counter
        self.examples = examples

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            key = f"{record.name}: {record.msg}"[:160]
            self.counter[key] += 1
            problem = f" ({record.exc_info[1]!r})" if record.exc_info else ""
            self.examples.setdefault(key, (record.getMessage() + problem)[:500])
        return False


@contextmanager
def quiet_logs(counter: Counter[str], examples: dict[str, str]) -> Iterator[None]:
    """Drop every log record on its way to a handler; count those at ERROR and above (and
    keep the first of each kind as an example)."""
    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    handlers = {
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
    }
    counting = _Count(counter, examples)
    for handler in handlers:
        handler.addFilter(counting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(counting)


def _counter(title: str, counter: Counter[str], limit: int = 60) -> list[str]:
    lines = [f"{title} ({sum(counter.values())}):"]
    lines += [f"  {n:>7}  {name}" for name, n in sorted(counter.items())[:limit]]
    if len(counter) > limit:
        lines.append(f"  ... {len(counter) - limit} more")
    return lines


def render(report: "Report", *, command: str = "python manage.py simulate") -> list[str]:
    steps = f"{report.completed_steps}/{report.steps}"
    lines = [
        f"seed {report.seed}: {steps} steps in {report.wall_seconds:.1f} s "
        f"({report.completed_steps / max(report.wall_seconds, 1e-9):.1f} steps/s), "
        f"{report.virtual_seconds / 86400:.1f} simulated days, drain {report.drain_rounds} rounds",
        *_counter("operations", report.operations),
        *_counter("answers", report.answers),
        *_counter("faults staged", report.faults),
        *_counter("crashes", report.crashes),
        *_counter("worker jobs", report.worker),
        *_counter("objects at the end", report.states),
        "providers: " + ", ".join(f"{k} {v}" for k, v in report.provider.items()),
        *_counter("invariant checks run", report.checks),
        *_counter("error logs", report.error_logs),
        *[f"  e.g. {example}" for example in report.error_examples.values()],
        f"digest {report.digest}",
    ]
    if report.failure is None:
        lines.append(f"seed {report.seed}: all invariants held (0 money errors)")
    else:
        failure = report.failure
        lines.append(f"FAILED seed {report.seed} at step {failure.step}: {failure.invariant}")
        lines += [f"  {detail}" for detail in failure.details]
        steps_to = report.steps if failure.step == "final" else failure.step
        lines.append(f"replay: {command} --seed {report.seed} --steps {steps_to}")
    return lines
