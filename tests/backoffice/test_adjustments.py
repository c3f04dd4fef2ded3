"""Manual adjustments: balanced entries with a reason, four eyes above the threshold, never a
negative balance."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from ledger.adjustments import adjustment_approve, adjustment_reject, adjustment_request
from ledger.errors import InsufficientFundsError, SelfApprovalError
from ledger.integrity import ledger_verify
from ledger.models import Adjustment, JournalEntry
from ledger.services import transfer_post
from orchestrator.errors import InvalidStateError, ValidationFailedError
from orchestrator.models import AuditLog, Event
from tests.ledger.conftest import available, balance, fund, usd

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _threshold(settings):
    settings.ADJUSTMENT_APPROVAL_THRESHOLD = Decimal("100")


def request(user, by, amount="10.00", direction="credit", reason="Refund of a double fee"):
    return adjustment_request(
        user=user, amount=usd(amount), direction=direction, reason=reason, requested_by=by
    )


def test_an_adjustment_up_to_the_threshold_is_posted_at_once_as_a_balanced_entry(buyer, finance):
    adjustment = request(buyer, finance, amount="100.00")

    adjustment.refresh_from_db()
    entry = JournalEntry.objects.get(reference=f"adjustment:{adjustment.public_id}")
    legs = sorted(entry.postings.values_list("account__code", "account__kind", "amount"))
    assert adjustment.status == Adjustment.Status.POSTED
    assert adjustment.entry == entry
    assert adjustment.approved_by is None
    assert legs == [
        ("", "available", Decimal("100.0000000")),
        ("adjustments", "system", Decimal("-100.0000000")),
    ]
    assert entry.memo == "Refund of a double fee"
    assert balance(available(buyer)) == "100"
    assert ledger_verify().ok


def test_a_posted_adjustment_is_audited_and_published(buyer, finance):
    adjustment = request(buyer, finance)

    actions = list(
        AuditLog.objects.filter(object_id=adjustment.public_id).values_list("action", flat=True)
    )
    event = Event.objects.get(type="adjustment.posted")
    assert actions == ["adjustment.requested", "adjustment.posted"]
    assert AuditLog.objects.filter(action="balance.credit").exists()
    assert event.aggregate_id == adjustment.public_id
    assert event.user_ids == [buyer.public_id]
    assert event.payload["amount"] == {"amount": "10.00", "currency": "USD"}
    assert event.payload["direction"] == "credit"


def test_above_the_threshold_it_waits_for_a_second_staff_member(buyer, finance, second_finance):
    adjustment = request(buyer, finance, amount="100.01")

    assert adjustment.status == Adjustment.Status.PENDING_APPROVAL
    assert adjustment.entry is None
    assert not JournalEntry.objects.filter(kind__startswith="adjustment").exists()
    assert not Event.objects.filter(type="adjustment.posted").exists()

    adjustment_approve(adjustment=adjustment, approved_by=second_finance)

    adjustment.refresh_from_db()
    assert adjustment.status == Adjustment.Status.POSTED
    assert adjustment.approved_by == second_finance
    assert balance(available(buyer)) == "100.01"


def test_the_requester_can_never_approve_their_own(buyer, finance):
    adjustment = request(buyer, finance, amount="500.00")

    with pytest.raises(SelfApprovalError):
        adjustment_approve(adjustment=adjustment, approved_by=finance)

    adjustment.refresh_from_db()
    assert adjustment.status == Adjustment.Status.PENDING_APPROVAL
    assert not JournalEntry.objects.filter(kind__startswith="adjustment").exists()


@pytest.mark.postgres
def test_the_database_refuses_an_approver_who_requested_it(buyer, finance):
    adjustment = request(buyer, finance, amount="500.00")

    with pytest.raises(IntegrityError), transaction.atomic():
        Adjustment.objects.filter(pk=adjustment.pk).update(approved_by=finance)


def test_an_adjustment_is_posted_once_however_often_it_is_approved(
    buyer, finance, second_finance, make_staff
):
    adjustment = request(buyer, finance, amount="500.00")
    adjustment_approve(adjustment=adjustment, approved_by=second_finance)

    with pytest.raises(InvalidStateError):
        adjustment_approve(adjustment=adjustment, approved_by=make_staff("finance"))

    assert JournalEntry.objects.filter(kind="adjustment.credit").count() == 1
    assert balance(available(buyer)) == "500"


def test_a_debit_larger_than_the_available_balance_is_refused_when_requested(buyer, finance):
    fund(buyer, usd("30"))

    with pytest.raises(InsufficientFundsError):
        request(buyer, finance, amount="30.01", direction="debit")

    assert not Adjustment.objects.exists()
    assert balance(available(buyer)) == "30"


def test_a_pending_debit_is_refused_at_approval_if_the_money_was_spent_meanwhile(
    buyer, seller, finance, second_finance
):
    fund(buyer, usd("300"))
    adjustment = request(buyer, finance, amount="250.00", direction="debit")
    transfer_post(
        source=available(buyer), destination=available(seller), amount=usd("100"), reference="t"
    )

    with pytest.raises(InsufficientFundsError):
        adjustment_approve(adjustment=adjustment, approved_by=second_finance)

    adjustment.refresh_from_db()
    assert adjustment.status == Adjustment.Status.PENDING_APPROVAL
    assert balance(available(buyer)) == "200"


def test_a_rejected_adjustment_moves_nothing_and_needs_a_reason(buyer, finance, second_finance):
    adjustment = request(buyer, finance, amount="500.00")

    with pytest.raises(ValidationFailedError):
        adjustment_reject(adjustment=adjustment, rejected_by=second_finance, reason=" ")
    adjustment_reject(adjustment=adjustment, rejected_by=second_finance, reason="Not owed")
    with pytest.raises(InvalidStateError):
        adjustment_approve(adjustment=adjustment, approved_by=second_finance)

    adjustment.refresh_from_db()
    assert adjustment.status == Adjustment.Status.REJECTED
    assert adjustment.rejection_reason == "Not owed"
    assert balance(available(buyer)) == "0"
    assert AuditLog.objects.get(action="adjustment.rejected").reason == "Not owed"


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"reason": "   "}, "reason"), ({"direction": "sideways"}, "direction")],
)
def test_a_request_without_a_reason_or_with_a_bad_direction_is_refused(
    buyer, finance, fields, field
):
    with pytest.raises(ValidationFailedError) as raised:
        request(buyer, finance, **fields)

    assert field in raised.value.details["fields"]
    assert not Adjustment.objects.exists()
