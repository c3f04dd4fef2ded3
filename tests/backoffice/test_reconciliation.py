"""Reconciliation cases: opened once per problem by verify_ledger, the janitors and the Airtm
flows; counted when seen again; cleared when gone; resolved by staff with a note."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection

from escrow.models import Escrow
from escrow.services.janitor import escrow_janitor
from escrow.services.postings import escrow_account
from escrow.services.reconciliation import trustless_work_check
from ledger.integrity import Finding
from ledger.models import JournalEntry, ReconciliationCase
from ledger.money import Money
from ledger.reconciliation import case_open, case_resolve, ledger_reconcile
from ledger.services import Leg, entry_post, system_account
from orchestrator.context import Actor, acting_as
from orchestrator.errors import InvalidStateError, ValidationFailedError
from orchestrator.models import AuditLog
from providers.clients.airtm import Payin
from providers.clients.errors import ProviderError
from providers.clients.trustless_work_types import Balance
from providers.models import TopUp, Withdrawal
from providers.services.janitor import provider_janitor
from providers.services.topups import topup_apply
from tests.backoffice.conftest import days_ago
from tests.ledger.conftest import available, fund, usd

pytestmark = pytest.mark.django_db

Case = ReconciliationCase


def finding(summary: str = "something is off", **fields) -> Finding:
    return Finding(kind=Case.Kind.LEDGER, key="ledger:test:1", summary=summary, **fields)


def run_verify(*args: str) -> tuple[bool, str]:
    out = StringIO()
    try:
        call_command("verify_ledger", *args, stdout=out)
    except CommandError:
        return False, out.getvalue()
    return True, out.getvalue()


def make_topup(user, status=TopUp.Status.PROCESSING, amount="50.00", **fields) -> TopUp:
    return TopUp.objects.create(
        marketplace_id=user.marketplace_id,
        user=user,
        amount=Decimal(amount),
        currency="USD",
        status=status,
        **fields,
    )


def credit_topup(topup: TopUp) -> JournalEntry:
    """The entry a succeeded top-up posts: clearing:airtm -> the user's available."""
    money = topup.money
    clearing = system_account(
        marketplace_id=topup.marketplace_id, code="provider_clearing:airtm", currency="USD"
    )
    return entry_post(
        marketplace_id=topup.marketplace_id,
        reference=f"topup:{topup.public_id}:succeeded",
        kind="topup.succeeded",
        legs=[Leg.debit(clearing, money), Leg.credit(available(topup.user), money)],
    )


def fill_escrow(escrow: Escrow, amount: str) -> None:
    """Credit the escrow's ledger account as the funding confirmation does (in USDC)."""
    money = Money.of(amount, "USDC")
    conversion = system_account(
        marketplace_id=escrow.marketplace_id, code="conversion:usd_usdc", currency="USDC"
    )
    entry_post(
        marketplace_id=escrow.marketplace_id,
        reference=f"test:escrow:{escrow.public_id}",
        kind="escrow.funded",
        legs=[Leg.debit(conversion, money), Leg.credit(escrow_account(escrow.order), money)],
    )


# --- Cases --------------------------------------------------------------------------------------


def test_a_problem_seen_again_is_counted_on_its_open_case_not_opened_twice(marketplace):
    first = case_open(finding=finding(marketplace_id=marketplace.pk), source="test")
    again = case_open(finding=finding("still off", marketplace_id=marketplace.pk), source="test")

    assert again.pk == first.pk
    assert Case.objects.count() == 1
    assert (again.occurrences, again.summary, again.status) == (2, "still off", Case.Status.OPEN)
    assert AuditLog.objects.filter(action="reconciliation_case.opened").count() == 1


def test_a_problem_back_after_its_case_was_resolved_opens_a_new_case():
    first = case_open(finding=finding(), source="test")
    case_resolve(case=first, resolution=Case.Resolution.FIXED, note="adjusted", resolved_by="fiona")

    second = case_open(finding=finding(), source="test")

    assert second.pk != first.pk
    assert second.status == Case.Status.OPEN
    assert second.occurrences == 1


@pytest.mark.postgres
def test_the_database_refuses_a_second_open_case_for_one_problem():
    case_open(finding=finding(), source="test")

    with pytest.raises(IntegrityError):
        Case.objects.create(kind=Case.Kind.LEDGER, key="ledger:test:1", source="x", summary="y")


def test_staff_resolve_with_a_note_under_their_name_and_only_once():
    case = case_open(finding=finding(), source="test")

    with pytest.raises(ValidationFailedError):
        case_resolve(case=case, resolution=Case.Resolution.FIXED, note="  ", resolved_by="fiona")
    with pytest.raises(ValidationFailedError):
        case_resolve(case=case, resolution=Case.Resolution.CLEARED, note="x", resolved_by="fiona")
    with acting_as(Actor(kind="staff", id="fiona")):
        case_resolve(
            case=case,
            resolution=Case.Resolution.NO_ACTION,
            note="Explained: a test payin.",
            resolved_by="fiona",
        )
    with pytest.raises(InvalidStateError):
        case_resolve(case=case, resolution=Case.Resolution.FIXED, note="x", resolved_by="frank")

    case.refresh_from_db()
    assert (case.status, case.resolution, case.resolved_by) == (
        Case.Status.RESOLVED,
        Case.Resolution.NO_ACTION,
        "fiona",
    )
    audit = AuditLog.objects.get(action="reconciliation_case.resolved")
    assert (audit.actor_kind, audit.actor_id, audit.reason) == (
        "staff",
        "fiona",
        "Explained: a test payin.",
    )


# --- verify_ledger -----------------------------------------------------------------------------


def test_verify_ledger_opens_an_airtm_case_for_a_missing_credit_and_clears_it_once_posted(buyer):
    topup = make_topup(buyer, status=TopUp.Status.SUCCEEDED)

    ok, output = run_verify()
    ok_again, _ = run_verify()

    case = Case.objects.get()
    assert not ok
    assert not ok_again
    assert f"top-up {topup.public_id} is TOPUP_SUCCEEDED but its credit entry is missing" in output
    assert (case.kind, case.key, case.source) == (
        Case.Kind.AIRTM,
        f"airtm:topup:{topup.public_id}:entries",
        "verify_ledger",
    )
    assert (case.object_type, case.object_id, case.marketplace_id) == (
        "topup",
        topup.public_id,
        buyer.marketplace_id,
    )
    assert case.occurrences == 2

    credit_topup(topup)
    ok, output = run_verify()

    case.refresh_from_db()
    assert ok, output
    assert (case.status, case.resolution) == (Case.Status.RESOLVED, Case.Resolution.CLEARED)
    assert "1 cleared" in output


def test_verify_ledger_flags_a_credit_for_a_topup_that_did_not_succeed(buyer):
    topup = make_topup(buyer, status=TopUp.Status.FAILED)
    credit_topup(topup)

    ok, output = run_verify()

    assert not ok
    assert f"top-up {topup.public_id} is TOPUP_FAILED but the user was credited" in output


def test_verify_ledger_flags_a_withdrawal_whose_entries_do_not_match_its_status(buyer):
    withdrawal = Withdrawal.objects.create(
        marketplace_id=buyer.marketplace_id,
        user=buyer,
        amount=Decimal("20.00"),
        currency="USD",
        destination_email="buyer@airtm.test",
        status=Withdrawal.Status.COMPLETED,
    )

    ok, _ = run_verify()

    case = Case.objects.get()
    assert not ok
    assert case.key == f"airtm:withdrawal:{withdrawal.public_id}:entries"
    assert "missing requested entry, missing completed entry" in case.summary


@pytest.mark.postgres
def test_verify_ledger_opens_one_ledger_case_for_a_tampered_balance(buyer):
    fund(buyer, usd("100"))
    account = available(buyer)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_account SET balance = balance + 1 WHERE id = %s", [account.pk]
        )

    run_verify()
    ok, output = run_verify()

    case = Case.objects.get()
    assert not ok
    assert "stored balance" in output
    assert (case.kind, case.key, case.object_id) == (
        Case.Kind.LEDGER,
        f"ledger:account:{account.public_id}:balance",
        account.public_id,
    )
    assert case.occurrences == 2


def test_airtm_confirming_a_payin_we_canceled_opens_a_case_at_once_that_verify_ledger_keeps(
    buyer,
):
    topup = make_topup(buyer, status=TopUp.Status.CANCELED, airtm_payin_id="payin_1")
    payin = Payin(
        id="payin_1",
        code=topup.public_id,
        status="CONFIRMED",
        amount=Decimal("50.00"),
        net_amount=None,
        airtm_fee=None,
        description="",
        airtm_user_id=None,
        airtm_user_email="payer@airtm.test",
        failure_reason=None,
        confirmation_uri="",
        cancel_uri="",
        created_at=None,
        updated_at=None,
    )

    topup_apply(topup_id=topup.pk, payin=payin)

    case = Case.objects.get()
    assert (case.kind, case.key, case.source) == (
        Case.Kind.AIRTM,
        f"airtm:topup:{topup.public_id}:status",
        "airtm",
    )
    assert "Airtm says CONFIRMED" in case.summary
    assert not JournalEntry.objects.filter(reference__startswith=f"topup:{topup.public_id}")

    ok, _ = run_verify()

    case.refresh_from_db()
    assert not ok
    assert Case.objects.count() == 1
    assert (case.status, case.occurrences) == (Case.Status.OPEN, 2)


# --- Janitors: stuck objects -------------------------------------------------------------------


def test_provider_janitor_opens_a_case_per_stuck_object_once_and_clears_it_when_final(
    buyer, settings
):
    settings.PROVIDER_STUCK_AFTER_SECONDS = 3600
    settings.PROVIDER_ATTENTION_ATTEMPTS = 5
    # Fresh `updated_at`: the janitor does not ask Airtm about them now, it only judges them.
    processing = make_topup(buyer, created_at=days_ago(1))
    failing = make_topup(
        buyer,
        status=TopUp.Status.CREATED,
        sync_attempts=5,
        last_error="PROVIDER_TIMEOUT: no answer",
    )
    make_topup(buyer, status=TopUp.Status.AWAITING_USER_CONFIRMATION, created_at=days_ago(1))
    make_topup(buyer)  # young

    provider_janitor()
    report = provider_janitor()

    cases = {case.key: case for case in Case.objects.all()}
    assert report.stuck == 2
    assert set(cases) == {f"stuck:topup:{processing.public_id}", f"stuck:topup:{failing.public_id}"}
    assert all(c.kind == Case.Kind.STUCK and c.occurrences == 2 for c in cases.values())
    assert "PROVIDER_TIMEOUT" in cases[f"stuck:topup:{failing.public_id}"].summary

    TopUp.objects.filter(pk=processing.pk).update(status=TopUp.Status.SUCCEEDED)
    provider_janitor()

    cleared = Case.objects.get(key=f"stuck:topup:{processing.public_id}")
    assert (cleared.status, cleared.resolution) == (Case.Status.RESOLVED, Case.Resolution.CLEARED)
    assert Case.objects.get(key=f"stuck:topup:{failing.public_id}").status == Case.Status.OPEN


def test_escrow_janitor_keeps_a_case_open_while_an_escrow_needs_attention(
    marketplace, buyer, seller, make_escrow
):
    escrow = make_escrow(
        marketplace, buyer, seller, needs_attention=True, last_error="fund: 503 from Trustless"
    )

    escrow_janitor()
    escrow_janitor()

    case = Case.objects.get()
    assert (case.kind, case.key, case.occurrences) == (
        Case.Kind.STUCK,
        f"stuck:escrow:{escrow.public_id}",
        2,
    )
    assert "fund: 503 from Trustless" in case.summary

    Escrow.objects.filter(pk=escrow.pk).update(needs_attention=False)
    escrow_janitor()

    case.refresh_from_db()
    assert case.resolution == Case.Resolution.CLEARED


def test_janitors_clear_only_their_own_objects_cases(marketplace, buyer, seller, make_escrow):
    make_escrow(marketplace, buyer, seller, needs_attention=True)
    escrow_janitor()

    provider_janitor()  # no stuck top-up or withdrawal

    assert Case.objects.get().status == Case.Status.OPEN


# --- The ledger against Trustless Work ---------------------------------------------------------


def test_trustless_work_check_compares_each_escrow_account_with_its_state(
    marketplace, buyer, seller, make_escrow
):
    held = make_escrow(marketplace, buyer, seller, Escrow.Status.FUNDED)
    fill_escrow(held, "120")
    empty = make_escrow(marketplace, buyer, seller, Escrow.Status.FUNDED)
    leftover = make_escrow(marketplace, buyer, seller, Escrow.Status.RELEASED)
    fill_escrow(leftover, "5")
    make_escrow(marketplace, buyer, seller, Escrow.Status.CREATED)

    findings = {f.key: f for f in trustless_work_check()}

    assert set(findings) == {
        f"tw:escrow:{empty.public_id}:state",
        f"tw:escrow:{leftover.public_id}:state",
    }
    assert (
        "holds 5.0000000 USDC (expected 0)"
        in findings[f"tw:escrow:{leftover.public_id}:state"].summary
    )
    assert all(f.kind == Case.Kind.TRUSTLESS_WORK for f in findings.values())


class FakeTrustlessWork:
    def __init__(self, balances: dict[str, str] | None = None, error: Exception | None = None):
        self.balances = balances or {}
        self.error = error
        self.asked: list[tuple[list[str], str, str]] = []

    def get_balances(self, addresses, *, signer, escrow_type):
        self.asked.append((list(addresses), signer, escrow_type))
        if self.error:
            raise self.error
        return [
            Balance(address=a, balance=Decimal(self.balances[a]))
            for a in addresses
            if a in self.balances
        ]


def test_remote_trustless_work_check_compares_the_ledger_with_the_contract_balance(
    marketplace, buyer, seller, make_escrow, monkeypatch
):
    roles = {"platform_address": "GPLATFORM"}
    agreeing = make_escrow(marketplace, buyer, seller, contract_id="CAGREE", roles=roles)
    differing = make_escrow(marketplace, buyer, seller, contract_id="CDIFFER", roles=roles)
    unknown = make_escrow(marketplace, buyer, seller, contract_id="CUNKNOWN", roles=roles)
    for escrow in (agreeing, differing, unknown):
        fill_escrow(escrow, "120")
    fake = FakeTrustlessWork({"CAGREE": "120", "CDIFFER": "100.5"})
    monkeypatch.setattr("escrow.services.reconciliation.tw_client", lambda: fake)

    local = trustless_work_check()
    remote = {f.key: f for f in trustless_work_check(remote=True)}

    assert local == []
    assert set(remote) == {
        f"tw:escrow:{differing.public_id}:chain",
        f"tw:escrow:{unknown.public_id}:chain",
    }
    assert remote[f"tw:escrow:{differing.public_id}:chain"].summary == (
        f"escrow {differing.public_id}: the ledger holds 120.0000000 USDC, the contract 100.5000000"
    )
    assert fake.asked == [(["CAGREE", "CDIFFER", "CUNKNOWN"], "GPLATFORM", "single-release")]


def test_a_provider_check_that_fails_leaves_its_cases_open_and_fails_verify(
    marketplace, buyer, seller, make_escrow, monkeypatch
):
    escrow = make_escrow(marketplace, buyer, seller, contract_id="CDIFFER")
    fill_escrow(escrow, "120")
    monkeypatch.setattr(
        "escrow.services.reconciliation.tw_client", lambda: FakeTrustlessWork({"CDIFFER": "1"})
    )
    ledger_reconcile(remote=True)
    down = FakeTrustlessWork(
        error=ProviderError("Trustless Work is down", provider="trustless_work", retryable=True)
    )
    monkeypatch.setattr("escrow.services.reconciliation.tw_client", lambda: down)

    report = ledger_reconcile(remote=True)

    assert not report.ok
    assert "TRUSTLESS_WORK check failed" in report.problems[-1]
    assert Case.objects.get(kind=Case.Kind.TRUSTLESS_WORK).status == Case.Status.OPEN
