"""Faults between us and Trustless Work (tasks in-process, so the janitor is the retry):
outages, rate limits, lost answers, a lagging read model, a lease held by another worker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from escrow.models import ChainStep, Escrow, Order
from escrow.services.janitor import escrow_janitor
from escrow.services.steps import escrow_advance
from escrow.tasks import escrow_advance_task
from ledger.models import JournalEntry
from orchestrator.celery import app
from tests.escrow.support import create_order, get_order, status
from tests.providers.support import balance, fund, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def stale_now(settings):
    settings.ESCROW_JANITOR_STALE_SECONDS = 0


@pytest.fixture
def deployed(api, act, buyer, seller, tw):
    fund(buyer, "500.00")
    order_id = create_order(api, buyer, seller)
    act(f"/orders/{order_id}/reserve", status=200)
    act(f"/orders/{order_id}/escrow")
    assert get_order(api, order_id)["escrow"]["status"] == "CREATED"
    return order_id


def escrow_deploy_tx(order_id: str) -> str:
    return ChainStep.objects.get(escrow__order__public_id=order_id, key="deploy").tx_hash


def fund_step(order_id: str) -> ChainStep:
    return ChainStep.objects.get(escrow__order__public_id=order_id, key="fund")


def test_an_outage_leaves_the_funding_pending_until_the_janitor_finishes_it(
    api, act, buyer, deployed, tw, stale_now
):
    tw.add_fault("server_error", path="send-transaction", times=None)

    waiting = act(f"/orders/{deployed}/escrow/fund")
    step = fund_step(deployed)
    assert (step.status, step.attempts) == (ChainStep.Status.PENDING, 1)
    assert "Could not confirm" in step.last_error
    assert status(deployed) == Order.Status.ESCROW_FUNDING
    assert balance(buyer) == {"available": "380.00", "reserved": "120.00"}

    tw.clear_faults()
    report = escrow_janitor()

    escrow = Escrow.objects.get(order__public_id=deployed)
    assert waiting["status"] == "ESCROW_FUNDING"
    assert (report.checked, report.advanced) == (1, 1)
    assert status(deployed) == Order.Status.IN_PROGRESS
    assert tw.applied_count(escrow.contract_id, "fund_escrow") == 1
    # Every submission during the outage was the one envelope the step stored: two
    # transactions were ever built and sent, the deploy and that funding.
    submitted = tw.stats()["submissions"]
    assert tw.stats()["built"] == 2
    assert set(submitted) == {escrow_deploy_tx(deployed), fund_step(deployed).tx_hash}
    assert balance(buyer) == {"available": "380.00", "reserved": "0.00"}
    assert ledger_ok()


def test_a_rate_limit_storm_is_waited_out(api, act, deployed, tw, stale_now):
    tw.add_fault("rate_limit", times=20)

    act(f"/orders/{deployed}/escrow/fund")
    assert fund_step(deployed).status == ChainStep.Status.PENDING
    tw.clear_faults()
    escrow_janitor()

    assert status(deployed) == Order.Status.IN_PROGRESS
    assert fund_step(deployed).attempts == 1


def test_a_lost_answer_is_confirmed_from_the_chain_not_the_lagging_read_model(
    api, act, deployed, tw, stale_now, settings
):
    settings.TRUSTLESS_WORK_CONFIRM_DELAYS = []  # the client gives up at once
    tw.configure(indexer_lag_seconds=None)  # the read model moves only when asked
    tw.add_fault("timeout_after_apply", path="send-transaction", hold_seconds=3)

    act(f"/orders/{deployed}/escrow/fund")
    escrow = Escrow.objects.get(order__public_id=deployed)
    assert tw.applied_count(escrow.contract_id, "fund_escrow") == 1  # landed
    assert status(deployed) == Order.Status.ESCROW_FUNDING  # but we did not see it
    stale = tw.escrow_state(escrow.contract_id)

    escrow_janitor()

    assert status(deployed) == Order.Status.IN_PROGRESS
    assert tw.applied_count(escrow.contract_id, "fund_escrow") == 1
    assert tw.submissions(fund_step(deployed).tx_hash) == 1
    assert stale is not None
    assert ledger_ok()


def test_a_held_lease_keeps_other_workers_out(api, act, deployed, tw):
    escrow = Escrow.objects.get(order__public_id=deployed)
    Escrow.objects.filter(pk=escrow.pk).update(lease_until=timezone.now() + timedelta(minutes=5))

    act(f"/orders/{deployed}/escrow/fund")
    escrow_advance(escrow_id=escrow.pk)

    assert fund_step(deployed).status == ChainStep.Status.PENDING
    assert tw.applied_count(escrow.contract_id, "fund_escrow") == 0
    Escrow.objects.filter(pk=escrow.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    escrow_advance(escrow_id=escrow.pk)
    assert status(deployed) == Order.Status.IN_PROGRESS


def test_a_step_failing_again_and_again_is_flagged_for_attention(
    api, act, deployed, tw, stale_now, settings
):
    settings.ESCROW_STEP_ATTENTION_ATTEMPTS = 3
    tw.add_fault("server_error", times=None)

    act(f"/orders/{deployed}/escrow/fund")
    escrow_janitor()
    report = escrow_janitor()

    escrow = Escrow.objects.get(order__public_id=deployed)
    assert fund_step(deployed).attempts == 3
    assert escrow.needs_attention
    assert report.attention == 1
    assert get_order(api, deployed)["escrow"]["last_error"].startswith("fund: ")


def test_a_stuck_step_keeps_one_retry_chain_however_often_the_janitor_passes(
    api, deployed, tw, stale_now, monkeypatch, django_capture_on_commit_callbacks
):
    """Found by the fault simulation: each run that waited queued one more delayed retry
    and each retry queued the next, so chains piled up while a step was stuck."""
    queued: list[dict[str, int]] = []
    monkeypatch.setitem(app.conf, "task_always_eager", False)  # retries are queued tasks
    monkeypatch.setattr(app, "send_task", lambda name, kwargs, countdown: queued.append(kwargs))
    tw.add_fault("server_error", path="send-transaction", times=None)
    with django_capture_on_commit_callbacks(execute=False):  # the request's task: below
        assert api.post(f"/api/v1/orders/{deployed}/escrow/fund").status_code == 202
    escrow = Escrow.objects.get(order__public_id=deployed)

    escrow_advance_task(escrow_id=escrow.pk)  # the request's task waits: retry 1 queued
    escrow_janitor()  # two janitor passes wait too: retries 2 and 3
    escrow_janitor()
    requests = tw.stats()["requests"]
    for retry in queued[:2]:  # the retries queued before the last attempt do nothing
        escrow_advance_task(**retry)

    assert tw.stats()["requests"] == requests  # not one call to Trustless Work
    assert [retry.get("retry_of") for retry in queued] == [1, 2, 3]
    tw.clear_faults()
    escrow_advance_task(**queued[2])  # the live one runs
    assert status(deployed) == Order.Status.IN_PROGRESS
    assert len(queued) == 3


def test_the_janitor_leaves_recent_steps_to_their_task(api, act, deployed, tw, settings):
    settings.ESCROW_JANITOR_STALE_SECONDS = 3600
    tw.add_fault("server_error", times=None)
    act(f"/orders/{deployed}/escrow/fund")
    tw.clear_faults()

    report = escrow_janitor()

    assert report.checked == 0
    assert status(deployed) == Order.Status.ESCROW_FUNDING


def test_an_unexpected_error_keeps_the_step_for_later_and_the_request_answers(
    api, act, deployed, tw, stale_now, monkeypatch
):
    def broken(address, amount):
        raise RuntimeError("boom")

    monkeypatch.setattr("escrow.services.sandbox.ensure_usdc", broken)

    answer = act(f"/orders/{deployed}/escrow/fund")
    step = fund_step(deployed)
    monkeypatch.undo()
    escrow_janitor()

    assert answer["status"] == "ESCROW_FUNDING"
    assert step.last_error == "internal error: RuntimeError"
    assert status(deployed) == Order.Status.IN_PROGRESS
    assert not Escrow.objects.get(order__public_id=deployed).needs_attention


def test_a_frozen_read_model_does_not_stop_the_flow(api, act, buyer, seller, tw, settings):
    tw.configure(indexer_lag_seconds=None)  # reads that are not on chain see nothing new
    fund(buyer, "500.00")
    order_id = create_order(api, buyer, seller)
    act(f"/orders/{order_id}/reserve", status=200)

    act(f"/orders/{order_id}/escrow/fund")
    for action in ("complete", "approve"):
        act(f"/orders/{order_id}/milestones/default/{action}")
    act(f"/orders/{order_id}/resolution/release")

    assert status(order_id) == Order.Status.CLOSED
    assert balance(seller) == {"available": "119.64"}
    assert ledger_ok()


def test_a_release_whose_answer_was_lost_pays_once(
    api, act, deployed, seller, tw, stale_now, settings
):
    act(f"/orders/{deployed}/escrow/fund")
    for action in ("complete", "approve"):
        act(f"/orders/{deployed}/milestones/default/{action}")
    settings.TRUSTLESS_WORK_CONFIRM_DELAYS = []
    tw.add_fault("timeout_after_apply", path="send-transaction", hold_seconds=3)

    act(f"/orders/{deployed}/resolution/release")
    escrow = Escrow.objects.get(order__public_id=deployed)
    assert tw.applied_count(escrow.contract_id, "release_funds") == 1
    assert status(deployed) == Order.Status.RELEASE_REQUESTED
    assert balance(seller) == {}
    escrow_janitor()
    escrow_janitor()

    assert status(deployed) == Order.Status.CLOSED
    assert tw.applied_count(escrow.contract_id, "release_funds") == 1
    assert balance(seller) == {"available": "119.64"}
    assert JournalEntry.objects.filter(reference=f"order:{deployed}:release").count() == 1
    assert ledger_ok()
