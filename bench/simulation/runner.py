"""The step loop, the drain at the end, the step log and its digest, the report.

A step: the virtual clock moves on (seconds mostly, sometimes minutes or hours), beat
queues what fell due, maybe one fault is staged, one operation runs through the API, the
worker runs (all that is due, a few jobs, or none; now and then losing, duplicating or
reordering a job), the Airtm simulator maybe delivers its webhooks, and the step's checks
run (all of them at checkpoints). The first failing check stops the run.

The drain: faults healed, people finish what waits on them (payers pay or cancel, the
marketplace commits or cancels its withdrawals, Airtm users verify), and the clock moves
ten minutes at a time, beat and worker running, until nothing is left in flight; then
every check runs, including that nothing is stuck and that both providers reconcile.

Everything the run decides comes from `random.Random(seed)` (and RNGs derived from the
seed) and the virtual clock, so a seed writes the same step log again: its SHA-256 is the
run's digest.
"""

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum

from bench.simulation.checks import Checks, Failures
from bench.simulation.faults import FaultInjector
from bench.simulation.ops import InvariantError, Operations
from bench.simulation.report import quiet_logs
from bench.simulation.tasks import WorkerKilled, short_name
from bench.simulation.world import World
from escrow.models import ChainStep, Dispute, Order
from ledger.models import Account, AccountShard
from providers.models import TopUp, Withdrawal

FAULT_RATE = 0.35
WEBHOOK_FLUSH_RATE = 0.5
DRAIN_ROUNDS = 600  # ten virtual minutes each: a bit over four days
DRAIN_STEP_SECONDS = 600


@dataclass
class Failure:
    step: int | str
    invariant: str
    details: Failures


@dataclass
class Report:
    seed: int
    steps: int
    checkpoint: int
    completed_steps: int = 0
    wall_seconds: float = 0.0
    virtual_seconds: float = 0.0
    drain_rounds: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    worker: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    provider: dict[str, int] = field(default_factory=dict)
    error_logs: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    states: Counter[str] = field(default_factory=Counter)
    failure: Failure | None = None
    log: list[str] = field(default_factory=list)
    digest: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


class Simulation:
    def __init__(
        self,
        *,
        seed: int,
        steps: int,
        checkpoint: int = 500,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.seed, self.steps, self.checkpoint = seed, steps, checkpoint
        self.progress = progress
        self.report = Report(seed=seed, steps=steps, checkpoint=checkpoint)
        self._fail_now: tuple[str, Failures] | None = None  # raised by an operation

    def run(self) -> Report:
        started = time.monotonic()
        random.seed(f"{self.seed}:product")  # the product's own jitter (back-off delays)
        world = World(self.seed)
        try:
            with quiet_logs(self.report.error_logs, self.report.error_examples), world.open():
                self.world = world
                self.ops = Operations(world)
                self.faults = FaultInjector(world)
                self.checks = Checks(world)
                self._loop()
        finally:
            self.report.wall_seconds = time.monotonic() - started
        return self._finish()

    # --- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        for step in range(1, self.steps + 1):
            self._log(self._step(step))
            names = (
                Checks.FULL if step % self.checkpoint == 0 or step == self.steps else Checks.STEP
            )
            if self._check(step, names):
                return
            self.report.completed_steps = step
            if self.progress is not None and names is Checks.FULL:
                self.progress(f"seed {self.seed}: step {step}/{self.steps}, checks passed")
        self._drain()
        self._check("final", Checks.FINAL)

    def _step(self, step: int) -> str:
        world, rng = self.world, self.world.rng
        delta = self._delta(rng)
        world.advance(delta)
        world.beat.tick()
        parts = [f"{step} +{delta}s"]
        if rng.random() < FAULT_RATE:
            parts.append(f"[{self.faults.inject()}]")
        parts.append(self._operation())
        parts.append(self._work(rng))
        if rng.random() < WEBHOOK_FLUSH_RATE:
            parts.append(f"webhooks {world.airtm.flush_webhooks()}")
        world.crashes.disarm()
        return " | ".join(parts)

    @staticmethod
    def _delta(rng: random.Random) -> int:
        roll = rng.random()
        if roll < 0.90:
            return rng.randint(1, 30)
        if roll < 0.99:
            return rng.randint(60, 900)
        return rng.randint(3600, 6 * 3600)

    def _operation(self) -> str:
        for _ in range(20):
            name = self.ops.pick_operation()
            try:
                line = self.ops.table[name][1]()
            except InvariantError as exc:
                self._fail_now = (exc.invariant, [exc.detail])
                return f"{name} !! {exc.invariant}"
            if line is not None:
                self.report.operations[name] += 1
                said = line.split(" -> ")[1].split(" ")[0] if " -> " in line else "done"
                self.report.answers[f"{name} {said}"] += 1
                return line
        return "nothing to do"

    def _work(self, rng: random.Random, *, everything: bool = False) -> str:
        """Run the worker: all that is due (most steps), a few jobs, or nothing."""
        roll = 0.0 if everything else rng.random()
        if roll >= 0.96:
            return "worker idle"
        budget = 2_000 if roll < 0.85 else rng.randint(1, 3)
        done: Counter[str] = Counter()
        while budget > 0:
            due = self.world.celery.due()
            if not due:
                break
            budget -= 1
            job = rng.choice(due) if not everything and rng.random() < 0.2 else due[0]
            self.world.celery.take(job)
            name = short_name(job.name)
            fault = 1.0 if everything else rng.random()
            if fault < 0.01:
                done[f"lost {name}"] += 1
                self.report.worker["lost"] += 1
                continue
            if fault < 0.02:
                self.world.celery.enqueue(job.name, job.kwargs).deliveries = 2
                self.report.worker["duplicated"] += 1
            try:
                outcome = self.world.celery.run_job(job)
            except WorkerKilled as killed:
                self.world.crashes.restore_leases()
                redelivered = rng.random() < 0.5
                if redelivered:
                    self.world.celery.requeue(job)
                then = "redelivered" if redelivered else "lost"
                done[f"killed {name} at {killed} {then}"] += 1
                self.report.crashes[f"killed at {killed}: in the worker, job {then}"] += 1
                continue
            self.report.worker[f"{outcome.state} {name}"] += 1
            if outcome.state != "ok":
                done[f"{outcome.state} {name} {outcome.detail}".strip()] += 1
            else:
                done[name] += 1
        return "worker " + ", ".join(f"{k} x{n}" for k, n in sorted(done.items()))

    # --- checks -------------------------------------------------------------------------------

    def _check(self, step: int | str, names: tuple[str, ...]) -> bool:
        """Run the checks; True (and the failure recorded) when one fails."""
        failing = []
        if self._fail_now is not None:
            failing.append(self._fail_now)
            self._fail_now = None
        errors = self.world.server_errors
        if errors:
            failing.append(("no_server_error", list(errors)))
            errors.clear()
        fired = self.world.crashes.fired
        for point in fired:
            self.report.crashes[f"killed at {point}"] += 1
        fired.clear()
        failing += self.checks.run(names)
        if not failing:
            return False
        invariant, details = failing[0]
        self.report.failure = Failure(step, invariant, details)
        self._log(f"FAILED at {step}: {invariant}: {details}")
        return True

    # --- the drain ----------------------------------------------------------------------------

    def _drain(self) -> None:
        self.faults.heal()
        world = self.world
        for round_ in range(1, DRAIN_ROUNDS + 1):
            self.report.drain_rounds = round_
            people = self._people_finish()
            world.airtm.webhooks.release_held()
            webhooks = world.airtm.flush_webhooks()
            work = self._work(world.rng, everything=True)
            self._log(f"drain {round_} | {people} | webhooks {webhooks} | {work}")
            if not self.checks.nothing_stuck():
                return
            world.advance(DRAIN_STEP_SECONDS)
            world.beat.tick()
        self._work(world.rng, everything=True)

    def _people_finish(self) -> str:
        """Payers pay or give up, marketplaces commit or cancel, Airtm users verify."""
        ops, rng, done = self.ops, self.world.rng, []
        waiting = TopUp.objects.filter(status=TopUp.Status.AWAITING_USER_CONFIRMATION)
        for topup in self._ours(waiting):
            if rng.random() < 0.7 and topup.airtm_payin_id:
                ops.pay(topup)
            else:
                ops.post_action(topup, "cancel")
            done.append(ops.alias(topup.public_id, "t"))
        created = Withdrawal.objects.filter(
            status=Withdrawal.Status.CREATED, commit_requested=False
        )
        for withdrawal in self._ours(created):
            ops.post_action(withdrawal, "commit" if rng.random() < 0.7 else "cancel")
            done.append(ops.alias(withdrawal.public_id, "w"))
        pending = Withdrawal.objects.filter(status=Withdrawal.Status.PENDING_USER_ACTION)
        for withdrawal in self._ours(pending):
            self.world.airtm.complete_user_action(email=withdrawal.destination_email)
            done.append(ops.alias(withdrawal.public_id, "w"))
        return "people " + (",".join(done) or "-")

    def _ours(self, queryset: Any) -> list[Any]:
        markets = [m.marketplace for m in self.world.markets]
        return list(queryset.filter(marketplace__in=markets).order_by("pk"))

    # --- the end ------------------------------------------------------------------------------

    def _log(self, line: str) -> None:
        self.report.log.append(line)

    def _finish(self) -> Report:
        report = self.report
        world = getattr(self, "world", None)
        if world is not None:
            report.virtual_seconds = world.elapsed
            report.faults = self.faults.counts
            report.checks = self.checks.counts
            stats = world.airtm.stats()
            tw = world.tw.stats()
            report.provider = {
                "airtm payins": int(stats["payins"]),
                "airtm payouts": int(stats["payouts"]),
                "airtm webhook attempts": int(stats["webhooks"]["attempts"]),
                "airtm faults fired": int(stats["faultsFired"]),
                "tw contracts": len(tw["applied"]),
                "tw transactions applied": sum(sum(ops.values()) for ops in tw["applied"].values()),
                "outbound webhooks received": world.receiver.requests,
                "api requests": world.api_requests,
            }
            report.states = _states()
            if report.failure is None or report.failure.step == "final":
                self._log("balances " + self._balances())
        report.digest = hashlib.sha256("\n".join(report.log).encode()).hexdigest()
        return report

    def _balances(self) -> str:
        """Every account's balance, named by aliases (not random ids), for the digest."""
        parts = []
        shards = dict(
            AccountShard.objects.values("account_id")
            .annotate(t=Sum("balance"))
            .values_list("account_id", "t")
        )
        market = {m.marketplace.pk: m.index for m in self.world.markets}
        for account in Account.objects.select_related("user").order_by("pk"):
            if account.user is not None:
                owner = self.ops.alias(account.user.public_id, "u")
                name = f"{owner}.{account.kind}"
                balance = account.balance
            else:
                code = account.code
                if code.startswith("escrow:"):
                    code = "escrow:" + self.ops.alias(code.split(":", 1)[1], "o")
                name = f"m{market.get(account.marketplace_id, 0)}:{code}"
                balance = shards.get(account.pk, Decimal(0))
            parts.append(f"{name}={balance}{account.currency}")
        return " ".join(parts)


def _states() -> Counter[str]:
    """How the run's objects ended: top-ups, withdrawals, orders (and outcome), disputes."""
    states: Counter[str] = Counter()
    for model in (TopUp, Withdrawal, Dispute, ChainStep):
        for status, n in model.objects.values_list("status").annotate(n=Count("pk")):
            states[f"{model.__name__} {status}"] = n
    for status, outcome, n in Order.objects.values_list("status", "outcome").annotate(
        n=Count("pk")
    ):
        states[f"Order {status}{' ' + outcome if outcome else ''}"] = n
    return states
