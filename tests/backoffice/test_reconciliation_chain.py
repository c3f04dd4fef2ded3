"""verify_ledger's remote check against the Trustless Work simulator: a funded escrow's
ledger account and its contract agree, and an entry the chain never saw shows."""

import pytest

from escrow.models import Escrow
from ledger.models import ReconciliationCase
from ledger.reconciliation import ledger_reconcile
from tests.backoffice.test_reconciliation import fill_escrow

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_the_remote_check_reads_the_contract_and_finds_it_equal_to_the_ledger(funded):
    funded()

    report = ledger_reconcile(remote=True)

    assert report.ok, report.problems
    assert not ReconciliationCase.objects.exists()


def test_the_remote_check_opens_a_case_when_the_ledger_and_the_contract_differ(funded):
    order_id = funded()
    escrow = Escrow.objects.get(order__public_id=order_id)
    fill_escrow(escrow, "5")  # posted by mistake: nothing moved on chain

    report = ledger_reconcile(remote=True)

    cases = {case.key: case for case in ReconciliationCase.objects.all()}
    assert not report.ok
    # More than the escrow's amount (seen locally), and not what the contract holds.
    assert set(cases) == {
        f"tw:escrow:{escrow.public_id}:state",
        f"tw:escrow:{escrow.public_id}:chain",
    }
    chain = cases[f"tw:escrow:{escrow.public_id}:chain"]
    assert chain.kind == ReconciliationCase.Kind.TRUSTLESS_WORK
    assert "the ledger holds 125.0000000 USDC, the contract 120.0000000" in chain.summary
