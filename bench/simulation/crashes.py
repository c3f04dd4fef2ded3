"""Crash points: where the simulation kills a process, and what the dead process leaves.

A crash is armed by the runner ("the next time anything passes point P, the process dies")
and fires as `WorkerKilled`, which no `except Exception` of the product catches. Django's
`atomic` rolls back the open transaction, as the database would when the connection
drops. What a real kill would not undo is put back: a lease the dead process held on the
object (its `lease_until`) is restored after the product's `finally` cleared it, so the
janitor must wait for it to expire, as it would.

The points (each is a module attribute the product looks up at call time):

- escrow.confirm:   Trustless Work applied a chain step; we die before confirming it.
- escrow.signed:    a step's envelope is signed and stored; we die before submitting it.
- withdrawal.apply: Airtm created/committed/answered a payout; we die before applying it.
- topup.apply:      Airtm created/answered a payin; we die before applying it.
- inbound.apply:    a verified Airtm webhook is being processed; we die before applying it.
- outbound.send:    an outbound webhook was delivered; we die before recording the attempt.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models

import escrow.services.steps as steps
import providers.services.topups as topups
import providers.services.withdrawals as withdrawals
import webhooks.inbound as inbound
import webhooks.outbound as outbound
from bench.simulation.tasks import WorkerKilled
from escrow.models import ChainStep, Escrow
from providers.models import TopUp, Withdrawal
from providers.services.webhooks import airtm_event_apply as event_apply

POINTS = (
    "escrow.confirm",
    "escrow.signed",
    "withdrawal.apply",
    "topup.apply",
    "inbound.apply",
    "outbound.send",
)


@dataclass
class Crashes:
    armed: str | None = None
    fired: list[str] = field(default_factory=list)
    _leases: list[tuple[type[models.Model], int, datetime]] = field(default_factory=list)

    def arm(self, point: str) -> None:
        self.armed = point

    def disarm(self) -> None:
        self.armed = None

    def _maybe_kill(self, point: str, lease: tuple[type[models.Model], int] | None) -> None:
        if self.armed != point:
            return
        self.armed = None
        self.fired.append(point)
        if lease is not None:
            model, pk = lease
            held = model._default_manager.filter(pk=pk).values_list("lease_until", flat=True)
            until = held.first()
            if until is not None:
                self._leases.append((model, pk, until))
        raise WorkerKilled(point)

    def restore_leases(self) -> None:
        """After a kill: the dead process's leases stand until they expire."""
        for model, pk, until in self._leases:
            model._default_manager.filter(pk=pk).update(lease_until=until)
        self._leases.clear()

    @contextmanager
    def installed(self) -> Iterator["Crashes"]:
        crashes = self
        originals: list[tuple[Any, str, Any]] = []

        def patch(module: Any, name: str, wrapper: Callable[..., Any]) -> None:
            originals.append((module, name, getattr(module, name)))
            setattr(module, name, wrapper)

        confirm, journal = steps._confirm, steps._journal_writer
        w_apply, t_apply = withdrawals.withdrawal_apply, topups.topup_apply
        send = outbound.send

        def crash_confirm(step: ChainStep, *args: Any, **kwargs: Any) -> Any:
            crashes._maybe_kill("escrow.confirm", (Escrow, step.escrow_id))
            return confirm(step, *args, **kwargs)

        def crash_journal(step_pk: int) -> Callable[[str, str], None]:
            record = journal(step_pk)

            def recorded(signed_xdr: str, tx_hash: str) -> None:
                record(signed_xdr, tx_hash)
                escrow_id = ChainStep.objects.values_list("escrow_id", flat=True).get(pk=step_pk)
                crashes._maybe_kill("escrow.signed", (Escrow, escrow_id))

            return recorded

        def crash_withdrawal_apply(**kwargs: Any) -> Any:
            crashes._maybe_kill("withdrawal.apply", (Withdrawal, kwargs["withdrawal_id"]))
            return w_apply(**kwargs)

        def crash_topup_apply(**kwargs: Any) -> Any:
            crashes._maybe_kill("topup.apply", (TopUp, kwargs["topup_id"]))
            return t_apply(**kwargs)

        def crash_event_apply(**kwargs: Any) -> Any:
            crashes._maybe_kill("inbound.apply", None)
            return event_apply(**kwargs)

        def crash_send(*args: Any, **kwargs: Any) -> Any:
            outcome = send(*args, **kwargs)
            crashes._maybe_kill("outbound.send", None)
            return outcome

        patch(steps, "_confirm", crash_confirm)
        patch(steps, "_journal_writer", crash_journal)
        patch(withdrawals, "withdrawal_apply", crash_withdrawal_apply)
        patch(topups, "topup_apply", crash_topup_apply)
        patch(inbound, "airtm_event_apply", crash_event_apply)
        patch(outbound, "send", crash_send)
        try:
            yield self
        finally:
            for module, name, original in reversed(originals):
                setattr(module, name, original)
