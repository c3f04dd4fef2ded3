"""Deploy and fund against the simulator (tasks in-process): the saga, its ledger effects
and its failure paths."""

from decimal import Decimal

import pytest

from escrow.models import ChainStep, Escrow, Order
from ledger.models import JournalEntry
from ledger.selectors import available_balance
from ledger.services import system_account
from orchestrator.models import Event
from providers.models import StellarKey
from tests.escrow.support import create_order, get_order, status
from tests.providers.support import balance, fund, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def reserved(api, act, buyer, seller, tw):
    fund(buyer, "500.00")
    order_id = create_order(api, buyer, seller)
    act(f"/orders/{order_id}/reserve", status=200)
    return order_id


def step(api, act, path, status=202):
    """Ask for an action, let its chain steps run, and answer the order as it is then."""
    act(path, status=status)
    return get_order(api, path.split("/")[2])


def escrow_of(order_id: str) -> Escrow:
    return Escrow.objects.get(order__public_id=order_id)


def test_deploy_then_fund_moves_the_reservation_into_escrow(
    api, act, buyer, marketplace, reserved, tw
):
    deployed = step(api, act, f"/orders/{reserved}/escrow")
    escrow = escrow_of(reserved)
    funded = step(api, act, f"/orders/{reserved}/escrow/fund")

    assert deployed["status"] == "ESCROW_CREATING"
    assert deployed["escrow"]["status"] == "CREATED"
    assert deployed["escrow"]["contract_id"].startswith("C")
    assert funded["status"] == "IN_PROGRESS"
    assert funded["escrow"]["status"] == "FUNDED"
    assert funded["escrow"]["amount"] == "120.0000000"
    assert tw.stroops(escrow.contract_id) == 1_200_000_000
    assert tw.applied_count(escrow.contract_id, "fund_escrow") == 1
    assert balance(buyer) == {"available": "380.00", "reserved": "0.00"}
    escrow_account = system_account(
        marketplace_id=marketplace.pk, code=f"escrow:{reserved}", currency="USDC"
    )
    assert available_balance(account=escrow_account).text() == "120.0000000"
    types = list(
        Event.objects.filter(aggregate_id__in=[reserved, escrow.public_id]).values_list(
            "type", flat=True
        )
    )
    for expected in (
        "order.escrow_creating",
        "escrow.created",
        "order.escrow_funding",
        "escrow.funded",
        "order.escrow_funded",
        "order.in_progress",
    ):
        assert expected in types
    assert ledger_ok()


def test_the_treasury_funds_and_every_role_signs_its_own_key(api, act, marketplace, reserved, tw):
    step(api, act, f"/orders/{reserved}/escrow/fund")  # deploys first, then funds
    escrow = escrow_of(reserved)
    treasury = StellarKey.objects.get(marketplace=marketplace, role=StellarKey.Role.TREASURY)
    platform = StellarKey.objects.get(marketplace=marketplace, role=StellarKey.Role.PLATFORM)

    state = tw.escrow_state(escrow.contract_id)

    assert status(reserved) == Order.Status.IN_PROGRESS
    assert state is not None
    assert state["signer"] == platform.public_key
    assert state["roles"]["approver"] == escrow.roles["approver"]
    assert escrow.roles["funder"] == treasury.public_key
    applied = [e for e in tw.events() if e["type"] == "tx.applied"]
    assert [e["op"] for e in applied] == ["deploy", "fund_escrow"]


def test_a_refused_deploy_goes_back_to_funds_reserved_and_can_be_retried(
    api, act, reserved, tw, settings
):
    settings.STELLAR_USDC_ISSUER = "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"

    refused = step(api, act, f"/orders/{reserved}/escrow")
    settings.STELLAR_USDC_ISSUER = tw.usdc_issuer
    retried = step(api, act, f"/orders/{reserved}/escrow")

    assert refused["status"] == "FUNDS_RESERVED"
    assert refused["escrow"]["status"] == "FAILED"
    assert "Unsupported trustline" in refused["escrow"]["last_error"]
    assert retried["escrow"]["status"] == "CREATED"
    assert Event.objects.filter(type="order.escrow_failed", aggregate_id=reserved).exists()


def test_a_refused_funding_goes_back_and_moves_no_money(api, act, buyer, reserved, tw, monkeypatch):
    # The treasury is not minted any USDC: the contract refuses the funding.
    monkeypatch.setattr("escrow.services.sandbox.ensure_usdc", lambda address, amount: None)
    step(api, act, f"/orders/{reserved}/escrow")

    refused = step(api, act, f"/orders/{reserved}/escrow/fund")

    assert refused["status"] == "ESCROW_CREATING"
    assert refused["escrow"]["status"] == "CREATED"
    assert "insufficient funds" in refused["escrow"]["last_error"]
    assert balance(buyer) == {"available": "380.00", "reserved": "120.00"}
    assert not JournalEntry.objects.filter(reference__contains="escrow_funded").exists()
    assert ChainStep.objects.get(key="fund").status == ChainStep.Status.FAILED


def test_deploy_and_fund_in_the_wrong_state_are_409(api, buyer, seller, tw):
    order_id = create_order(api, buyer, seller)

    deploy = api.post(f"/api/v1/orders/{order_id}/escrow")
    fund_ = api.post(f"/api/v1/orders/{order_id}/escrow/fund")

    assert deploy.status_code == fund_.status_code == 409
    assert deploy.json()["error"]["details"]["current_state"] == "ORDER_CREATED"
    assert fund_.json()["error"]["code"] == "INVALID_STATE"


def test_cancel_after_deploy_abandons_the_empty_escrow(api, act, buyer, reserved, tw):
    step(api, act, f"/orders/{reserved}/escrow")

    canceled = step(api, act, f"/orders/{reserved}/cancel", status=200)
    fund_ = api.post(f"/api/v1/orders/{reserved}/escrow/fund")

    assert canceled["status"] == "CLOSED"
    assert canceled["escrow"]["status"] == "ABANDONED"
    assert fund_.status_code == 409
    assert balance(buyer) == {"available": "500.00", "reserved": "0.00"}
    assert ledger_ok()


def test_funding_needs_no_deploy_request_first(api, act, reserved, tw):
    funded = step(api, act, f"/orders/{reserved}/escrow/fund")

    assert funded["status"] == "IN_PROGRESS"
    assert Decimal(funded["escrow"]["amount"]) == Decimal("120")
