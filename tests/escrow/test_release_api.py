"""Milestones and release against the simulator (tasks in-process): the contract's payouts
and the ledger's entries agree to the stroop."""

from decimal import Decimal

import pytest

from escrow.models import Escrow, Milestone
from ledger.models import JournalEntry
from orchestrator.models import Event
from providers.models import StellarKey
from tests.escrow.support import create_order, get_order, stroops, usdc, wallet
from tests.providers.support import balance, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def test_complete_approve_release_pays_the_seller_what_the_contract_paid(
    api, act, funded, buyer, seller, marketplace, tw
):
    order_id = funded(amount="12.34", fee_bps=250)

    completed = act(f"/orders/{order_id}/milestones/default/complete", {"evidence": "https://x"})
    approved = act(f"/orders/{order_id}/milestones/default/approve")
    act(f"/orders/{order_id}/resolution/release", {"reason": "delivered"})
    order = get_order(api, order_id)

    assert completed["milestone_ref"] == "default"
    assert approved["milestone_ref"] == "default"
    assert order["status"] == "CLOSED"
    assert order["outcome"] == "RELEASED"
    assert order["escrow"]["status"] == "RELEASED"
    assert [m["status"] for m in order["milestones"]] == ["RELEASED"]
    assert order["milestones"][0]["evidence"] == "https://x"
    # 12.34 USDC: Trustless Work 0.3 % = 0.03702, platform 2.5 % = 0.3085, seller 11.99448.
    escrow = Escrow.objects.get(order__public_id=order_id)
    platform = StellarKey.objects.get(marketplace=marketplace, role=StellarKey.Role.PLATFORM)
    assert tw.stroops(tw.tw_fee_address) == 370_200
    assert tw.stroops(platform.public_key) == 3_085_000
    assert tw.stroops(wallet(seller)) == 119_944_800
    assert tw.stroops(escrow.contract_id) == 0
    # The ledger says the same, to the stroop: fees in USDC, the seller's nearest cent in
    # USD, and the 0.448 of a cent the contract paid beyond it under rounding.
    assert usdc(marketplace, "provider_fees:trustless_work") == Decimal("0.0370200")
    assert usdc(marketplace, "platform_fees") == Decimal("0.3085000")
    assert balance(seller) == {"available": "11.99"}
    assert usdc(marketplace, "rounding:trustless_work") == Decimal("0.0044800")
    assert usdc(marketplace, f"escrow:{order_id}") == 0
    assert balance(buyer) == {"available": "987.66", "reserved": "0.00"}
    entry = JournalEntry.objects.get(reference=f"order:{order_id}:release")
    assert entry.metadata["stroops"]["seller_net"] == 119_944_800
    assert entry.metadata["credits"] == {"seller": "11.99"}
    types = set(Event.objects.values_list("type", flat=True))
    assert {
        "escrow.milestone_completed",
        "escrow.milestone_approved",
        "escrow.milestone_released",
        "escrow.released",
        "order.release_requested",
        "order.released",
        "order.closed",
        "balance.credited",
    } <= types
    assert ledger_ok()


def test_two_milestones_are_paid_in_two_payouts(api, act, funded, seller, marketplace, tw):
    order_id = funded(
        amount="120.00",
        fee_bps=100,
        milestones=[
            {"milestone_ref": "sketch", "title": "Sketch", "amount": "40.00"},
            {"milestone_ref": "final", "title": "Final files", "amount": "80.00"},
        ],
    )
    escrow = Escrow.objects.get(order__public_id=order_id)
    assert escrow.kind == Escrow.Kind.MULTI

    for action in ("complete", "approve"):
        act(f"/orders/{order_id}/milestones/sketch/{action}")
    act(f"/orders/{order_id}/resolution/release", {"milestone_ref": "sketch"})
    halfway = get_order(api, order_id)
    seller_after_first = balance(seller)
    for action in ("complete", "approve"):
        act(f"/orders/{order_id}/milestones/final/{action}")
    act(f"/orders/{order_id}/resolution/release")
    done = get_order(api, order_id)

    assert halfway["status"] == "IN_PROGRESS"
    assert halfway["escrow"]["status"] == "FUNDED"
    assert [m["status"] for m in halfway["milestones"]] == ["RELEASED", "PENDING"]
    # 40.00: 0.12 to Trustless Work, 0.40 to the platform, 39.48 to the seller.
    assert seller_after_first == {"available": "39.48"}
    assert tw.applied_count(escrow.contract_id, "release_milestone_funds") == 2
    assert done["status"] == "CLOSED"
    assert done["escrow"]["status"] == "RELEASED"
    # 80.00: 0.24 and 0.80 in fees, 78.96 to the seller.
    assert balance(seller) == {"available": "118.44"}
    assert tw.stroops(wallet(seller)) == stroops("118.44")
    assert usdc(marketplace, "platform_fees") == Decimal("1.2")
    assert usdc(marketplace, "provider_fees:trustless_work") == Decimal("0.36")
    assert (
        JournalEntry.objects.filter(reference__startswith=f"order:{order_id}:release:").count() == 2
    )
    assert ledger_ok()


def test_milestone_actions_in_the_wrong_state_are_409(api, act, funded):
    order_id = funded()

    approve_pending = api.post(f"/api/v1/orders/{order_id}/milestones/default/approve")
    release_unapproved = api.post(f"/api/v1/orders/{order_id}/resolution/release")
    unknown = api.post(f"/api/v1/orders/{order_id}/milestones/nope/complete")
    act(f"/orders/{order_id}/milestones/default/complete")
    complete_again = api.post(f"/api/v1/orders/{order_id}/milestones/default/complete")

    assert approve_pending.status_code == 409
    assert approve_pending.json()["error"]["details"]["current_state"] == "PENDING"
    assert release_unapproved.status_code == 409
    assert release_unapproved.json()["error"]["details"]["milestones_not_approved"] == ["default"]
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "MILESTONE_NOT_FOUND")
    assert complete_again.status_code == 409
    assert complete_again.json()["error"]["details"]["current_state"] == "COMPLETED"


def test_milestones_before_funding_and_release_after_closing_are_409(
    api, act, buyer, seller, funded
):
    order_id = create_order(api, buyer, seller)
    early = api.post(f"/api/v1/orders/{order_id}/milestones/default/complete")
    released = funded()
    for action in ("complete", "approve"):
        act(f"/orders/{released}/milestones/default/{action}")
    act(f"/orders/{released}/resolution/release")

    again = api.post(f"/api/v1/orders/{released}/resolution/release")
    refund = api.post(f"/api/v1/orders/{released}/resolution/refund")

    assert (early.status_code, early.json()["error"]["details"]["current_state"]) == (
        409,
        "ORDER_CREATED",
    )
    assert (again.status_code, again.json()["error"]["details"]["current_state"]) == (409, "CLOSED")
    assert refund.status_code == 409


def test_approve_may_follow_complete_before_it_lands(
    api, funded, django_capture_on_commit_callbacks
):
    order_id = funded()

    with django_capture_on_commit_callbacks(execute=True):  # both steps queue, then run in order
        first = api.post(f"/api/v1/orders/{order_id}/milestones/default/complete")
        second = api.post(f"/api/v1/orders/{order_id}/milestones/default/approve")

    assert (first.status_code, second.status_code) == (202, 202)
    assert Milestone.objects.get(order__public_id=order_id).status == Milestone.Status.APPROVED
