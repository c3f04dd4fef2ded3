from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from ledger.errors import (
    HoldAmountError,
    HoldNotActiveError,
    InsufficientFundsError,
    ReferenceReusedError,
)
from ledger.models import Hold
from ledger.services import hold_capture, hold_expire_due, hold_place, hold_void, system_account
from orchestrator.models import Event
from tests.ledger.conftest import available, balance, fund, reserved, usd

pytestmark = pytest.mark.django_db


@pytest.fixture
def escrow(marketplace):
    return system_account(marketplace_id=marketplace.pk, code="escrow:ord_1", currency="USD")


def test_hold_place_moves_available_to_reserved(buyer):
    fund(buyer, usd("500.00"))

    hold = hold_place(user=buyer, amount=usd("500.00"), reference="order:1:reserve")

    assert hold.status == Hold.Status.ACTIVE
    assert balance(available(buyer)) == "0"
    assert balance(reserved(buyer)) == "500"


def test_hold_place_retry_returns_the_same_hold(buyer):
    fund(buyer, usd("10"))

    first = hold_place(user=buyer, amount=usd("6"), reference="h")
    again = hold_place(user=buyer, amount=usd("6"), reference="h")

    assert again.pk == first.pk
    assert balance(available(buyer)) == "4"


def test_hold_place_refuses_more_than_available(buyer):
    fund(buyer, usd("10"))

    with pytest.raises(InsufficientFundsError):
        hold_place(user=buyer, amount=usd("10.01"), reference="h")

    assert not Hold.objects.exists()


def test_a_short_hold_leaves_the_callers_transaction_usable(buyer):
    fund(buyer, usd("10"))

    with transaction.atomic():
        with pytest.raises(InsufficientFundsError):
            hold_place(user=buyer, amount=usd("10.01"), reference="h")
        # No savepoint was spent on it, and none was needed: the transaction goes on.
        hold = hold_place(user=buyer, amount=usd("10"), reference="h2")

    assert Hold.objects.get().pk == hold.pk
    assert balance(reserved(buyer)) == "10"


def test_hold_place_with_a_reference_reused_for_another_amount_is_refused(buyer):
    fund(buyer, usd("10"))
    hold_place(user=buyer, amount=usd("6"), reference="h")

    with pytest.raises(ReferenceReusedError):
        hold_place(user=buyer, amount=usd("5"), reference="h")

    assert balance(available(buyer)) == "4"


def test_partial_capture_returns_the_remainder_to_available(buyer, escrow):
    fund(buyer, usd("100"))
    hold = hold_place(user=buyer, amount=usd("100"), reference="h")

    hold = hold_capture(hold=hold, destination=escrow, amount=usd("60"), reference="cap")

    assert hold.status == Hold.Status.CAPTURED
    assert format(hold.captured_amount.normalize(), "f") == "60"
    assert balance(available(buyer)) == "40"
    assert balance(reserved(buyer)) == "0"


def test_capture_is_idempotent_by_reference_and_resolves_only_once(buyer, escrow):
    fund(buyer, usd("100"))
    hold = hold_place(user=buyer, amount=usd("100"), reference="h")
    hold_capture(hold=hold, destination=escrow, reference="cap")

    retried = hold_capture(hold=hold, destination=escrow, reference="cap")

    assert retried.status == Hold.Status.CAPTURED
    with pytest.raises(HoldNotActiveError):
        hold_capture(hold=hold, destination=escrow, reference="cap-2")
    with pytest.raises(HoldNotActiveError):
        hold_void(hold=hold, reference="void")


def test_capture_above_the_hold_is_refused(buyer, escrow):
    fund(buyer, usd("100"))
    hold = hold_place(user=buyer, amount=usd("50"), reference="h")

    with pytest.raises(HoldAmountError):
        hold_capture(hold=hold, destination=escrow, amount=usd("50.01"), reference="cap")

    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.ACTIVE


def test_void_returns_everything(buyer):
    fund(buyer, usd("100"))
    hold = hold_place(user=buyer, amount=usd("30"), reference="h")

    hold_void(hold=hold, reference="v")

    assert balance(available(buyer)) == "100"
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.VOIDED


def test_hold_expiry_under_an_injected_clock_voids_exactly_once(buyer, escrow):
    fund(buyer, usd("100"))
    now = timezone.now()
    hold = hold_place(
        user=buyer, amount=usd("40"), reference="h", expires_at=now + timedelta(hours=1)
    )

    before = hold_expire_due(now=now + timedelta(minutes=59))
    at = hold_expire_due(now=now + timedelta(hours=1))
    later = hold_expire_due(now=now + timedelta(hours=2))

    assert (before, at, later) == (0, 1, 0)
    assert Hold.objects.get(pk=hold.pk).status == Hold.Status.EXPIRED
    assert balance(available(buyer)) == "100"
    assert Event.objects.filter(type="hold.expired", aggregate_id=hold.public_id).count() == 1
    with pytest.raises(HoldNotActiveError):
        hold_capture(hold=hold, destination=escrow, reference="too-late")
