"""The seeded fault simulation (bench/simulation), short: two seeds hold every invariant and
a seed replays identically; bugs planted in the product are caught by the invariant that
guards against them (so the simulation cannot pass by checking nothing)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command

import providers.services.topups as topups
import providers.services.withdrawals as withdrawals
from bench.simulation import simulate
from bench.simulation.report import render
from ledger.models import Account
from ledger.services import Leg, entry_post, system_account, user_account
from providers.clients.airtm import AirtmClient
from providers.models import TopUp, Withdrawal

pytestmark = [pytest.mark.django_db(transaction=True)]

STEPS = 150


def fresh_database() -> None:
    call_command("flush", interactive=False, verbosity=0)


def test_two_seeds_keep_every_invariant_and_a_seed_replays_identically() -> None:
    first = simulate(seed=11, steps=STEPS, checkpoint=50)
    assert first.ok, "\n".join(render(first))
    assert first.operations.total() == STEPS
    assert first.faults.total() > 20
    assert first.checks["nothing_stuck"] == 1

    fresh_database()
    again = simulate(seed=11, steps=STEPS, checkpoint=50)
    assert again.digest == first.digest
    assert again.log == first.log

    fresh_database()
    other = simulate(seed=12, steps=STEPS, checkpoint=50)
    assert other.ok, "\n".join(render(other))
    assert other.digest != first.digest


def _credit_twice(original: Callable[..., None]) -> Callable[..., None]:
    def credit(topup: TopUp, payin: Any) -> None:
        original(topup, payin)
        clearing = system_account(
            marketplace_id=topup.marketplace_id, code=topups.CLEARING, currency="USD"
        )
        available = user_account(user=topup.user, kind=Account.Kind.AVAILABLE, currency="USD")
        entry_post(
            marketplace_id=topup.marketplace_id,
            reference=f"topup:{topup.public_id}:again",
            kind="topup.succeeded",
            legs=[Leg.debit(clearing, topup.money), Leg.credit(available, topup.money)],
        )

    return credit


def _no_completed_event(original: Callable[..., None]) -> Callable[..., None]:
    def publish(withdrawal: Withdrawal, *, previous: str) -> None:
        if withdrawal.status != Withdrawal.Status.COMPLETED:
            original(withdrawal, previous=previous)

    return publish


def _payout_twice(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_payout(self: AirtmClient, *, code: str, **kwargs: Any) -> Any:
        original(self, code=f"{code}-again", **kwargs)
        return original(self, code=code, **kwargs)

    return create_payout


@pytest.mark.parametrize(
    ("target", "name", "bug", "invariant"),
    [
        (topups, "_credit", _credit_twice, "clearing_is_airtm_facts"),
        (withdrawals, "_publish", _no_completed_event, "events_per_change"),
        (AirtmClient, "create_payout", _payout_twice, "provider_at_most_once"),
    ],
    ids=["top-up credited twice", "withdrawal completed without its event", "paid out twice"],
)
def test_a_planted_bug_is_reported_with_its_seed_step_and_replay_command(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, bug: Any, invariant: str
) -> None:
    monkeypatch.setattr(target, name, bug(getattr(target, name)))

    report = simulate(seed=5, steps=STEPS, checkpoint=25)

    assert report.failure is not None
    assert report.failure.invariant == invariant, report.failure
    printed = "\n".join(render(report))
    assert f"FAILED seed 5 at step {report.failure.step}: {invariant}" in printed
    assert f"replay: python manage.py simulate --seed 5 --steps {report.failure.step}" in printed
