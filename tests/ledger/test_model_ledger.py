"""Model-based test: random operations against the ledger and a tiny in-memory ledger agree."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ledger.errors import HoldNotActiveError, InsufficientFundsError
from ledger.integrity import ledger_verify
from ledger.models import Account, Hold
from ledger.money import Money
from ledger.services import hold_capture, hold_place, hold_void, system_account, transfer_post
from orchestrator.models import MarketplaceUser
from orchestrator.services import marketplace_create, user_create
from tests.ledger.conftest import available, fund, reserved

pytestmark = pytest.mark.django_db

cents = st.integers(min_value=1, max_value=5_000).map(lambda c: Money(Decimal(c).scaleb(-2), "USD"))
USERS = 3


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        n = MarketplaceUser.objects.count()
        market = marketplace_create(name="model", slug=f"model-{n}")
        self.users = [
            user_create(marketplace=market, external_user_id=f"u{i}", email="", type="BOTH")[0]
            for i in range(USERS)
        ]
        self.escrow = system_account(marketplace_id=market.pk, code="escrow:model", currency="USD")
        self.available = [Decimal(0)] * USERS
        self.reserved = [Decimal(0)] * USERS
        self.open_holds: dict[int, tuple[int, Decimal]] = {}  # hold pk -> (user, amount)

    def ref(self) -> str:
        self.step += 1
        return f"op-{self.step}"

    @rule(user=st.integers(0, USERS - 1), amount=cents)
    def top_up(self, user: int, amount: Money) -> None:
        fund(self.users[user], amount, reference=self.ref())
        self.available[user] += amount.amount

    @rule(source=st.integers(0, USERS - 1), destination=st.integers(0, USERS - 1), amount=cents)
    def transfer(self, source: int, destination: int, amount: Money) -> None:
        if source == destination:
            return
        call = lambda: transfer_post(  # noqa: E731
            source=available(self.users[source]),
            destination=available(self.users[destination]),
            amount=amount,
            reference=self.ref(),
        )
        if self.available[source] < amount.amount:
            with pytest.raises(InsufficientFundsError):
                call()
            return
        call()
        self.available[source] -= amount.amount
        self.available[destination] += amount.amount

    @rule(target=holds, user=st.integers(0, USERS - 1), amount=cents)
    def place(self, user: int, amount: Money) -> int:
        if self.available[user] < amount.amount:
            with pytest.raises(InsufficientFundsError):
                hold_place(user=self.users[user], amount=amount, reference=self.ref())
            return -1
        hold = hold_place(user=self.users[user], amount=amount, reference=self.ref())
        self.available[user] -= amount.amount
        self.reserved[user] += amount.amount
        self.open_holds[hold.pk] = (user, amount.amount)
        return hold.pk

    @rule(pk=holds, percent=st.integers(1, 100))
    def capture(self, pk: int, percent: int) -> None:
        if pk < 0:
            return
        hold = Hold.objects.get(pk=pk)
        part = Money(hold.amount, "USD").allocate([percent, 100 - percent])[0]
        if part.amount == 0:
            return
        if pk not in self.open_holds:
            with pytest.raises(HoldNotActiveError):
                hold_capture(hold=hold, destination=self.escrow, amount=part, reference=self.ref())
            return
        hold_capture(hold=hold, destination=self.escrow, amount=part, reference=self.ref())
        user, held = self.open_holds.pop(pk)
        self.reserved[user] -= held
        self.available[user] += held - part.amount

    @rule(pk=holds)
    def void(self, pk: int) -> None:
        if pk < 0:
            return
        hold = Hold.objects.get(pk=pk)
        if pk not in self.open_holds:
            with pytest.raises(HoldNotActiveError):
                hold_void(hold=hold, reference=self.ref())
            return
        hold_void(hold=hold, reference=self.ref())
        user, held = self.open_holds.pop(pk)
        self.reserved[user] -= held
        self.available[user] += held

    @invariant()
    def balances_match_the_model(self) -> None:
        for i, user in enumerate(self.users):
            assert Account.objects.get(pk=available(user).pk).balance == self.available[i]
            assert Account.objects.get(pk=reserved(user).pk).balance == self.reserved[i]

    def teardown(self) -> None:
        assert ledger_verify().ok


def test_ledger_agrees_with_an_in_memory_model():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
