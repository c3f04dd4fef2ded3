"""The simulation's Celery: a broker queue in memory, a worker and beat on the virtual clock.

While `SimCelery.active()` runs, every `apply_async` / `delay` / `send_task` of the project
(after-commit tasks, retries with a countdown, beat entries) lands in `queue` with its
due time, instead of running eagerly or going to Redis. The runner decides when the worker
runs, so an API answer comes back before its task runs, as in production.

`run_job` executes one job the way a worker does (Celery's tracer, not `apply()`): a task's
own `self.retry(countdown=...)` is queued again through `apply_async`, a failure is
recorded, and a `WorkerKilled` raised at a crash point escapes to the runner, which
redelivers the message (acks_late with reject_on_worker_lost) or loses it.

`Beat` enqueues the interval entries of CELERY_BEAT_SCHEDULE when the virtual clock
passes their time (the nightly crontab verification is the runner's own job).
"""

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from celery.app.task import Task
from celery.app.trace import build_tracer
from django.conf import settings

from orchestrator.celery import app

SHORT = {
    "escrow.tasks.escrow_advance_task": "escrow_advance",
    "escrow.tasks.escrow_janitor": "escrow_janitor",
    "providers.tasks.topup_submit_task": "topup_submit",
    "providers.tasks.withdrawal_submit_task": "withdrawal_submit",
    "providers.tasks.provider_janitor": "provider_janitor",
    "webhooks.tasks.inbound_webhook_process": "inbound_process",
    "webhooks.tasks.inbound_webhook_sweep": "inbound_sweep",
    "webhooks.tasks.delivery_attempt": "delivery_attempt",
    "webhooks.tasks.delivery_sweep": "delivery_sweep",
    "webhooks.tasks.delivery_dispatch": "delivery_dispatch",
    "ledger.tasks.ledger_seal_task": "ledger_seal",
    "ledger.tasks.hold_expiry_sweep": "hold_expiry",
    "orchestrator.tasks.idempotency_cleanup": "idempotency_cleanup",
}


def short_name(task_name: str) -> str:
    return SHORT.get(task_name, task_name.rsplit(".", 1)[-1])


class WorkerKilled(BaseException):
    """The process died here (a crash point). BaseException: no `except Exception` in the
    product catches it, so nothing after this point runs, as after a SIGKILL."""


@dataclass
class Job:
    seq: int
    name: str
    kwargs: dict[str, Any]
    due: float  # virtual seconds
    retries: int = 0
    deliveries: int = 1  # > 1: a redelivery after a killed worker or a broker duplicate


@dataclass
class JobOutcome:
    job: Job
    state: str  # ok, retry, failed, killed
    detail: str = ""


@dataclass
class SimCelery:
    now: Callable[[], float]
    queue: list[Job] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def enqueue(self, name: str, kwargs: dict[str, Any] | None, countdown: float = 0.0) -> Job:
        job = Job(next(self._seq), name, dict(kwargs or {}), self.now() + max(0.0, countdown))
        self.queue.append(job)
        return job

    def due(self) -> list[Job]:
        now = self.now()
        return [job for job in self.queue if job.due <= now]

    def take(self, job: Job) -> None:
        self.queue.remove(job)

    def requeue(self, job: Job) -> None:
        job.deliveries += 1
        job.due = self.now()
        self.queue.append(job)

    @contextmanager
    def active(self) -> Iterator["SimCelery"]:
        sim = self
        original_apply_async = Task.apply_async
        original_eager = app.conf.task_always_eager

        def apply_async(
            task: Task[Any, Any],
            args: Any = None,
            kwargs: dict[str, Any] | None = None,
            *,
            countdown: float | None = None,
            retries: int = 0,
            **options: Any,
        ) -> None:
            if args:
                raise ValueError(f"{task.name}: the project's tasks take keyword arguments only")
            job = sim.enqueue(task.name, kwargs, countdown or 0.0)
            job.retries = retries

        def send_task(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
            sim.enqueue(name, kwargs, float(options.get("countdown") or 0.0))

        Task.apply_async = apply_async  # type: ignore[assignment,method-assign]
        app.send_task = send_task  # type: ignore[assignment,method-assign]
        # Not eager: the services schedule their retries (retry_later) as a worker would.
        app.conf.task_always_eager = False
        try:
            yield self
        finally:
            Task.apply_async = original_apply_async  # type: ignore[method-assign]
            del app.send_task
            app.conf.task_always_eager = original_eager

    def run_job(self, job: Job) -> JobOutcome:
        """Run `job` as a worker would. WorkerKilled propagates to the caller."""
        task = app.tasks[job.name]
        tracer = build_tracer(task.name, task, eager=False, propagate=False, app=app)
        task_id = f"sim-{job.seq}-{job.deliveries}"
        request = {
            "id": task_id,
            "task": job.name,
            "retries": job.retries,
            "is_eager": False,
            "delivery_info": {"is_eager": False, "redelivered": job.deliveries > 1},
            "hostname": "sim-worker",
            "ignore_result": True,
        }
        result = tracer(task_id, [], job.kwargs, request)
        info = result.info
        if info is None:
            return JobOutcome(job, "ok")
        error = info.retval
        detail = type(getattr(error, "exc", error)).__name__
        if info.state == "RETRY":
            return JobOutcome(job, "retry")
        return JobOutcome(job, "failed", detail)


@dataclass
class Beat:
    """Celery beat's interval entries, due by the virtual clock."""

    celery: SimCelery
    due: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        now = self.celery.now()
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            if isinstance(entry["schedule"], int | float):
                self.due[entry["task"]] = now + float(entry["schedule"])

    def tick(self) -> list[str]:
        """Queue every entry that fell due (once, however long the clock jumped)."""
        now = self.celery.now()
        queued = []
        for name, at in sorted(self.due.items()):
            if at > now:
                continue
            interval = self._interval(name)
            self.due[name] = at + interval * (1 + int((now - at) // interval))
            self.celery.enqueue(name, {})
            queued.append(name)
        return queued

    @staticmethod
    def _interval(name: str) -> float:
        for entry in settings.CELERY_BEAT_SCHEDULE.values():
            if entry["task"] == name:
                return float(entry["schedule"])
        raise KeyError(name)
