"""Refunds and disputes against the simulator (tasks in-process): every decision, its
validation, scopes, and the ledger against the chain."""

from decimal import Decimal

import pytest

from escrow.models import ChainStep, Dispute, Escrow
from ledger.models import JournalEntry
from orchestrator.models import Event
from providers.models import StellarKey
from tests.escrow.support import get_order, stroops, usdc, wallet
from tests.providers.support import balance, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def open_dispute(act, order_id, by="BUYER", status=201):
    body = {"opened_by": by, "reason": "QUALITY_ISSUE", "evidence": ["https://proof"]}
    return act(f"/orders/{order_id}/resolution/dispute", body, status=status)


def decide(act, dispute_id, status=202, **body):
    act(f"/disputes/{dispute_id}/assign", {"assigned_to": "agent-7"}, status=200)
    return act(f"/disputes/{dispute_id}/resolve", body, status=status)


def test_a_refund_gives_the_buyer_back_what_they_paid(api, act, funded, buyer, marketplace, tw):
    order_id = funded(amount="120.00", fee_bps=250)

    act(f"/orders/{order_id}/resolution/refund", {"reason": "seller vanished"})
    order = get_order(api, order_id)

    assert (order["status"], order["outcome"]) == ("CLOSED", "REFUNDED")
    assert order["escrow"]["status"] == "REFUNDED"
    assert [m["status"] for m in order["milestones"]] == ["RESOLVED"]
    assert balance(buyer) == {"available": "1000.00", "reserved": "0.00"}
    # On chain the resolution charged 0.36 + 3.00 in fees; the platform bears both.
    assert tw.stroops(wallet(buyer)) == stroops("116.64")
    assert usdc(marketplace, "provider_fees:trustless_work") == Decimal("0.36")
    assert usdc(marketplace, "platform_fees") == Decimal("-0.36")
    assert usdc(marketplace, f"escrow:{order_id}") == 0
    escrow = Escrow.objects.get(order__public_id=order_id)
    assert tw.applied_count(escrow.contract_id, "dispute_escrow") == 1
    assert tw.applied_count(escrow.contract_id, "resolve_dispute") == 1
    types = set(Event.objects.filter(aggregate_id=order_id).values_list("type", flat=True))
    assert {"order.refund_requested", "order.refunded", "order.closed"} <= types
    assert ledger_ok()


def test_with_buyer_borne_refund_fees_the_buyer_gets_what_the_contract_paid(
    api, act, funded, buyer, marketplace, tw, settings
):
    settings.ESCROW_REFUND_FEES = "buyer"
    order_id = funded(amount="120.00", fee_bps=250)

    act(f"/orders/{order_id}/resolution/refund")

    assert balance(buyer) == {"available": "996.64", "reserved": "0.00"}
    assert usdc(marketplace, "platform_fees") == Decimal("3")
    assert ledger_ok()


def test_a_dispute_split_sixty_forty(api, act, funded, buyer, seller, marketplace, tw):
    order_id = funded(amount="120.00", fee_bps=250)

    opened = open_dispute(act, order_id)
    again = open_dispute(act, order_id, by="SELLER", status=200)
    assigned = act(f"/disputes/{opened['id']}/assign", {"assigned_to": "agent-7"}, status=200)
    decided = act(
        f"/disputes/{opened['id']}/resolve",
        {"decision": "SPLIT", "release_amount": "72.00", "refund_amount": "48.00", "note": "half"},
    )
    dispute = api.get(f"/api/v1/disputes/{opened['id']}").json()
    order = get_order(api, order_id)

    assert (opened["status"], opened["opened_by"], opened["order"]["status"]) == (
        "OPEN",
        "BUYER",
        "DISPUTED",
    )
    assert again["id"] == opened["id"]
    assert (assigned["status"], assigned["assigned_to"]) == ("UNDER_REVIEW", "agent-7")
    assert decided["decision"] == "SPLIT"
    assert dispute["status"] == "RESOLVED"
    assert (dispute["release_amount"], dispute["refund_amount"]) == ("72.00", "48.00")
    assert (order["status"], order["outcome"]) == ("CLOSED", "SPLIT")
    assert order["escrow"]["status"] == "RESOLVED"
    # Fees 0.36 + 3.00 on 120, charged pro rata: 2.016 of them on the seller's 72.
    assert tw.stroops(wallet(seller)) == stroops("69.984")
    assert balance(seller) == {"available": "69.98"}
    assert usdc(marketplace, "rounding:trustless_work") == Decimal("0.004")
    # The buyer's 48 comes back whole; the platform bears its 1.344 share of the fees.
    assert tw.stroops(wallet(buyer)) == stroops("46.656")
    assert balance(buyer) == {"available": "928.00", "reserved": "0.00"}
    assert usdc(marketplace, "platform_fees") == Decimal("1.656")
    assert JournalEntry.objects.filter(reference=f"order:{order_id}:resolution").count() == 1
    dispute_events = list(
        Event.objects.filter(aggregate_id=opened["id"]).values_list("type", flat=True)
    )
    assert dispute_events == [
        "dispute.opened",
        "dispute.under_review",
        "dispute.decided",
        "dispute.resolved",
    ]
    assert ledger_ok()


@pytest.mark.parametrize(
    ("decision", "seller_gets", "buyer_gets", "outcome"),
    [("FULL_RELEASE", "49.85", "950.00", "RELEASED"), ("FULL_REFUND", None, "1000.00", "REFUNDED")],
)
def test_full_decisions(
    api, act, funded, buyer, seller, tw, decision, seller_gets, buyer_gets, outcome
):
    order_id = funded(amount="50.00", fee_bps=0)
    opened = open_dispute(act, order_id, by="SELLER")

    decide(act, opened["id"], decision=decision)

    order = get_order(api, order_id)
    assert (order["status"], order["outcome"]) == ("CLOSED", outcome)
    assert balance(seller).get("available") == seller_gets
    assert balance(buyer)["available"] == buyer_gets
    assert ledger_ok()


def test_a_split_that_does_not_add_up_is_400_and_changes_nothing(api, act, funded):
    order_id = funded(amount="120.00")
    opened = open_dispute(act, order_id)
    act(f"/disputes/{opened['id']}/assign", {"assigned_to": "agent-7"}, status=200)

    short = api.post(
        f"/api/v1/disputes/{opened['id']}/resolve",
        {"decision": "SPLIT", "release_amount": "72.00", "refund_amount": "47.99"},
        format="json",
    )
    missing = api.post(
        f"/api/v1/disputes/{opened['id']}/resolve",
        {"decision": "SPLIT", "release_amount": "72.00"},
        format="json",
    )
    extra = api.post(
        f"/api/v1/disputes/{opened['id']}/resolve",
        {"decision": "FULL_REFUND", "refund_amount": "120.00"},
        format="json",
    )

    assert (short.status_code, short.json()["error"]["code"]) == (400, "INVALID_AMOUNT")
    assert short.json()["error"]["details"]["in_escrow"] == "120.00"
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert (extra.status_code, extra.json()["error"]["code"]) == (400, "VALIDATION_ERROR")
    dispute = Dispute.objects.get(public_id=opened["id"])
    assert (dispute.status, dispute.decision) == (Dispute.Status.UNDER_REVIEW, "")
    assert not ChainStep.objects.filter(action="resolve").exists()


def test_dispute_actions_in_the_wrong_state_are_409(api, act, funded):
    order_id = funded()
    opened = open_dispute(act, order_id)

    early = api.post(
        f"/api/v1/disputes/{opened['id']}/resolve", {"decision": "FULL_REFUND"}, format="json"
    )
    decide(act, opened["id"], decision="FULL_REFUND")
    reassign = api.post(
        f"/api/v1/disputes/{opened['id']}/assign", {"assigned_to": "x"}, format="json"
    )
    again = api.post(
        f"/api/v1/disputes/{opened['id']}/resolve", {"decision": "FULL_REFUND"}, format="json"
    )
    reopen = api.post(
        f"/api/v1/orders/{order_id}/resolution/dispute",
        {"opened_by": "BUYER", "reason": "OTHER"},
        format="json",
    )

    assert (early.status_code, early.json()["error"]["details"]["current_state"]) == (409, "OPEN")
    assert reassign.status_code == 409
    assert again.json()["error"]["details"]["current_state"] == "RESOLVED"
    assert (reopen.status_code, reopen.json()["error"]["details"]["current_state"]) == (
        409,
        "CLOSED",
    )


def test_release_and_refund_are_refused_while_disputed(api, act, funded):
    order_id = funded()
    open_dispute(act, order_id)

    release = api.post(f"/api/v1/orders/{order_id}/resolution/release")
    refund = api.post(f"/api/v1/orders/{order_id}/resolution/refund")

    assert release.json()["error"]["details"]["current_state"] == "DISPUTED"
    assert refund.status_code == 409


@pytest.mark.parametrize("scopes", [["write"], ["read"]])
def test_assign_and_resolve_need_the_support_scope(act, funded, make_client, marketplace, scopes):
    order_id = funded()
    opened = open_dispute(act, order_id)
    client = make_client(marketplace, scopes)

    assign = client.post(
        f"/api/v1/disputes/{opened['id']}/assign", {"assigned_to": "me"}, format="json"
    )
    resolve = client.post(
        f"/api/v1/disputes/{opened['id']}/resolve", {"decision": "FULL_REFUND"}, format="json"
    )
    support = make_client(marketplace, ["support"]).post(
        f"/api/v1/disputes/{opened['id']}/assign", {"assigned_to": "me"}, format="json"
    )

    assert (assign.status_code, resolve.status_code) == (403, 403)
    assert support.status_code == 200


def test_a_multi_release_dispute_splits_each_unpaid_milestone_pro_rata(
    api, act, funded, buyer, seller, tw
):
    order_id = funded(
        amount="120.00",
        milestones=[
            {"milestone_ref": "sketch", "title": "Sketch", "amount": "40.00"},
            {"milestone_ref": "final", "title": "Final", "amount": "80.00"},
        ],
    )
    opened = open_dispute(act, order_id)

    decide(act, opened["id"], decision="SPLIT", release_amount="60.00", refund_amount="60.00")

    escrow = Escrow.objects.get(order__public_id=order_id)
    order = get_order(api, order_id)
    assert (order["status"], order["outcome"]) == ("CLOSED", "SPLIT")
    assert [m["status"] for m in order["milestones"]] == ["RESOLVED", "RESOLVED"]
    assert tw.applied_count(escrow.contract_id, "dispute_milestone") == 2
    assert tw.applied_count(escrow.contract_id, "resolve_milestone_dispute") == 2
    assert tw.stroops(escrow.contract_id) == 0
    # 20 + 40 to the seller less 0.3 %: 59.82; the buyer's 60 back whole.
    assert balance(seller) == {"available": "59.82"}
    assert tw.stroops(wallet(seller)) == stroops("59.82")
    assert balance(buyer)["available"] == "940.00"
    assert ledger_ok()


def test_disputes_are_listed_and_filtered(api, act, funded):
    first = funded()
    second = funded(amount="10.00")
    a = open_dispute(act, first)
    b = open_dispute(act, second, by="SELLER")

    everything = api.get("/api/v1/disputes").json()["data"]
    by_seller = api.get("/api/v1/disputes", {"opened_by": "SELLER"}).json()["data"]
    by_order = api.get("/api/v1/disputes", {"order_id": first}).json()["data"]

    assert [d["id"] for d in everything] == [b["id"], a["id"]]
    assert [d["id"] for d in by_seller] == [b["id"]]
    assert [d["id"] for d in by_order] == [a["id"]]
    assert StellarKey.objects.filter(role=StellarKey.Role.DISPUTE_RESOLVER).count() == 1
