"""End to end: the API in this process, a real Celery worker process running the chain
steps against the Trustless Work simulator over HTTP (every signature checked), the Airtm
simulator for money in and out. Balances are checked at every step and the ledger must
verify after every scenario."""

from decimal import Decimal

import pytest
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError

from escrow.models import ChainStep, Escrow, Milestone, Order
from escrow.tasks import escrow_janitor
from ledger.models import JournalEntry
from orchestrator.models import Marketplace
from providers.models import StellarKey, TopUp, Withdrawal
from tests.escrow.support import create_order, get_order, stroops, usdc, wallet
from tests.providers.support import balance, fund, ledger_ok
from tests.worker import CeleryWorker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

SELLER_EMAIL = "seller@airtm.test"


def post(api, path, body=None, status=202):
    response = api.post(f"/api/v1{path}", body or {}, format="json")
    assert response.status_code == status, response.json()
    return response.json()


def order_status(order_id):
    return Order.objects.get(public_id=order_id).status


def escrow_status(order_id):
    escrow = Escrow.objects.filter(order__public_id=order_id).first()
    return escrow.status if escrow else None


def milestone_status(order_id, ref):
    return Milestone.objects.get(order__public_id=order_id, ref=ref).status


def fee(marketplace, bps):
    Marketplace.objects.filter(pk=marketplace.pk).update(platform_fee_bps=bps)


def in_progress(api, buyer, seller, amount="120.00", **extra):
    """An order taken to IN_PROGRESS through the API, the worker doing the chain part."""
    order_id = create_order(api, buyer, seller, amount=amount, **extra)
    post(api, f"/orders/{order_id}/reserve", status=200)
    post(api, f"/orders/{order_id}/escrow/fund")
    wait_until(lambda: order_status(order_id) == Order.Status.IN_PROGRESS)
    return order_id


def deliver(api, order_id, ref="default"):
    post(api, f"/orders/{order_id}/milestones/{ref}/complete", {"evidence": "https://proof"})
    wait_until(lambda: milestone_status(order_id, ref) == Milestone.Status.COMPLETED)
    post(api, f"/orders/{order_id}/milestones/{ref}/approve")
    wait_until(lambda: milestone_status(order_id, ref) == Milestone.Status.APPROVED)


EXPECTED_SIGNER = {
    "deploy": StellarKey.Role.PLATFORM,
    "fund": StellarKey.Role.TREASURY,
    "complete": "seller",
    "approve": "buyer",
    "release": StellarKey.Role.RELEASE_SIGNER,
    "resolve": StellarKey.Role.DISPUTE_RESOLVER,
}


def assert_every_step_signed_by_its_role(order_id, buyer, seller, marketplace, disputer="buyer"):
    """Each stored envelope's source is the role's account and carries its signature (the
    simulator refused anything else with tx_bad_auth)."""
    keys = {
        role: StellarKey.objects.get(marketplace=marketplace, role=role, user=None)
        for role in StellarKey.Role.values
        if role != StellarKey.Role.USER
        if StellarKey.objects.filter(marketplace=marketplace, role=role, user=None).exists()
    }
    users = {
        "buyer": StellarKey.objects.get(user=buyer),
        "seller": StellarKey.objects.get(user=seller),
    }
    expected = {**EXPECTED_SIGNER, "dispute": disputer}
    steps = ChainStep.objects.filter(escrow__order__public_id=order_id, status="DONE")
    assert steps.exists()
    for step in steps:
        if not step.signed_xdr:
            continue  # nothing had to be sent
        who = expected[step.action]
        key = users[who] if who in users else keys[who]
        envelope = TransactionEnvelope.from_xdr(
            step.signed_xdr, "Test SDF Network ; September 2015"
        )
        assert envelope.transaction.source.account_id == key.public_key, step.key
        assert signed_by(envelope, key.public_key), step.key


def signed_by(envelope, address):
    keypair = Keypair.from_public_key(address)
    for decorated in envelope.signatures:
        if decorated.signature_hint != keypair.signature_hint():
            continue
        try:
            keypair.verify(envelope.hash(), decorated.signature)
        except BadSignatureError:
            continue
        return True
    return False


@pytest.fixture
def linked_seller(api, seller, airtm):
    response = api.post(
        f"/api/v1/users/{seller.public_id}/airtm/link", {"email": SELLER_EMAIL}, format="json"
    )
    assert response.status_code == 200, response.json()
    return seller


def test_the_whole_freelance_flow(api, buyer, linked_seller, marketplace, both_live, tw):
    seller, airtm_live = linked_seller, both_live
    fee(marketplace, 250)
    # Top-up: the buyer pays 500 USD on Airtm's checkout page.
    topup = post(api, "/topups", {"user_id": buyer.public_id, "amount": "500.00"}, status=201)
    airtm_live.pay(topup["airtm_payin_id"], "payer@airtm.test")
    airtm_live.flush()
    wait_until(lambda: TopUp.objects.get(public_id=topup["id"]).status == TopUp.Status.SUCCEEDED)
    assert balance(buyer) == {"available": "500.00"}
    # Order and reservation.
    order_id = create_order(api, buyer, seller, amount="120.00")
    assert balance(buyer) == {"available": "500.00"}
    post(api, f"/orders/{order_id}/reserve", status=200)
    assert balance(buyer) == {"available": "380.00", "reserved": "120.00"}
    # Deploy: nothing moves.
    post(api, f"/orders/{order_id}/escrow")
    wait_until(lambda: escrow_status(order_id) == Escrow.Status.CREATED)
    assert balance(buyer) == {"available": "380.00", "reserved": "120.00"}
    # Fund: the reservation becomes the escrow's USDC.
    post(api, f"/orders/{order_id}/escrow/fund")
    wait_until(lambda: order_status(order_id) == Order.Status.IN_PROGRESS)
    contract = Escrow.objects.get(order__public_id=order_id).contract_id
    assert balance(buyer) == {"available": "380.00", "reserved": "0.00"}
    assert usdc(marketplace, f"escrow:{order_id}") == Decimal(120)
    assert tw.stroops(contract) == stroops("120")
    # Complete and approve: nothing moves.
    deliver(api, order_id)
    assert balance(seller) == {}
    # Release: 0.36 to Trustless Work, 3.00 to the platform, 116.64 to the seller.
    post(api, f"/orders/{order_id}/resolution/release")
    wait_until(lambda: order_status(order_id) == Order.Status.CLOSED)
    assert balance(seller) == {"available": "116.64"}
    assert tw.stroops(wallet(seller)) == stroops("116.64")
    assert usdc(marketplace, "platform_fees") == Decimal("3")
    assert usdc(marketplace, "provider_fees:trustless_work") == Decimal("0.36")
    assert tw.stroops(contract) == 0
    # Withdraw to the seller's Airtm account.
    withdrawal = post(
        api,
        "/withdrawals",
        {"user_id": seller.public_id, "amount": "100.00", "commit": True},
        status=201,
    )
    airtm_live.flush()
    wait_until(
        lambda: (
            Withdrawal.objects.get(public_id=withdrawal["id"]).status == Withdrawal.Status.COMPLETED
        )
    )
    assert balance(seller) == {"available": "16.64", "withdrawal_pending": "0.00"}
    assert balance(buyer) == {"available": "380.00", "reserved": "0.00"}
    assert_every_step_signed_by_its_role(order_id, buyer, seller, marketplace)
    assert ledger_ok()


def test_two_milestones_are_released_in_two_payouts(api, buyer, seller, marketplace, tw_live, tw):
    fund(buyer, "300.00")
    order_id = in_progress(
        api,
        buyer,
        seller,
        milestones=[
            {"milestone_ref": "sketch", "title": "Sketch", "amount": "40.00"},
            {"milestone_ref": "final", "title": "Final", "amount": "80.00"},
        ],
    )
    contract = Escrow.objects.get(order__public_id=order_id).contract_id

    deliver(api, order_id, "sketch")
    post(api, f"/orders/{order_id}/resolution/release", {"milestone_ref": "sketch"})
    wait_until(lambda: milestone_status(order_id, "sketch") == Milestone.Status.RELEASED)
    wait_until(lambda: order_status(order_id) == Order.Status.IN_PROGRESS)
    assert balance(seller) == {"available": "39.88"}
    assert tw.stroops(contract) == stroops("80")
    deliver(api, order_id, "final")
    post(api, f"/orders/{order_id}/resolution/release", {"milestone_ref": "final"})
    wait_until(lambda: order_status(order_id) == Order.Status.CLOSED)

    assert balance(seller) == {"available": "119.64"}
    assert tw.stroops(wallet(seller)) == stroops("119.64")
    assert tw.applied_count(contract, "release_milestone_funds") == 2
    assert (
        JournalEntry.objects.filter(reference__startswith=f"order:{order_id}:release:").count() == 2
    )
    assert balance(buyer) == {"available": "180.00", "reserved": "0.00"}
    assert_every_step_signed_by_its_role(order_id, buyer, seller, marketplace)
    assert ledger_ok()


def test_refund(api, buyer, seller, marketplace, tw_live, tw):
    fee(marketplace, 250)
    fund(buyer, "300.00")
    order_id = in_progress(api, buyer, seller)
    assert balance(buyer) == {"available": "180.00", "reserved": "0.00"}

    post(api, f"/orders/{order_id}/resolution/refund", {"reason": "never delivered"})
    wait_until(lambda: order_status(order_id) == Order.Status.CLOSED)

    assert get_order(api, order_id)["outcome"] == "REFUNDED"
    assert balance(buyer) == {"available": "300.00", "reserved": "0.00"}
    assert balance(seller) == {}
    assert tw.stroops(wallet(buyer)) == stroops("116.64")  # the contract took its fees
    assert usdc(marketplace, "platform_fees") == Decimal("-0.36")  # and the platform bore them
    assert_every_step_signed_by_its_role(order_id, buyer, seller, marketplace)
    assert ledger_ok()


def test_a_dispute_split_sixty_forty(api, make_client, buyer, seller, marketplace, tw_live, tw):
    support = make_client(marketplace, ["support"])
    fund(buyer, "300.00")
    order_id = in_progress(api, buyer, seller, amount="100.00")

    dispute = post(
        api,
        f"/orders/{order_id}/resolution/dispute",
        {"opened_by": "SELLER", "reason": "OTHER", "description": "buyer unresponsive"},
        status=201,
    )
    wait_until(lambda: escrow_status(order_id) == Escrow.Status.DISPUTED)
    assert post(support, f"/disputes/{dispute['id']}/assign", {"assigned_to": "ana"}, status=200)
    post(
        support,
        f"/disputes/{dispute['id']}/resolve",
        {"decision": "SPLIT", "release_amount": "60.00", "refund_amount": "40.00"},
    )
    wait_until(lambda: order_status(order_id) == Order.Status.CLOSED)

    assert api.get(f"/api/v1/disputes/{dispute['id']}").json()["status"] == "RESOLVED"
    assert get_order(api, order_id)["outcome"] == "SPLIT"
    # 0.3 % of each share to Trustless Work: the seller nets 59.82, the buyer gets 40 back.
    assert balance(seller) == {"available": "59.82"}
    assert balance(buyer) == {"available": "240.00", "reserved": "0.00"}
    assert tw.stroops(wallet(seller)) == stroops("59.82")
    assert tw.stroops(wallet(buyer)) == stroops("39.88")
    assert_every_step_signed_by_its_role(order_id, buyer, seller, marketplace, disputer="seller")
    assert ledger_ok()


def test_a_worker_killed_between_funding_and_confirming_funds_exactly_once(
    api, buyer, seller, tw_live_patient, tw
):
    tw_live = tw_live_patient
    fund(buyer, "300.00")
    order_id = create_order(api, buyer, seller)
    post(api, f"/orders/{order_id}/reserve", status=200)
    post(api, f"/orders/{order_id}/escrow")
    wait_until(lambda: escrow_status(order_id) == Escrow.Status.CREATED)
    contract = Escrow.objects.get(order__public_id=order_id).contract_id
    # The funding lands on chain; its answer is held back while the worker waits for it.
    tw.add_fault("timeout_after_apply", path="send-transaction", hold_seconds=60)

    post(api, f"/orders/{order_id}/escrow/fund")
    wait_until(lambda: tw.applied_count(contract, "fund_escrow") == 1)
    tw_live.kill()
    tw.release_holds()

    step = ChainStep.objects.get(escrow__order__public_id=order_id, key="fund")
    assert step.status == ChainStep.Status.PENDING
    assert step.signed_xdr  # stored before it was sent
    assert order_status(order_id) == Order.Status.ESCROW_FUNDING
    assert balance(buyer) == {"available": "180.00", "reserved": "120.00"}

    restarted = CeleryWorker(tw_live.queue)
    restarted.start()
    try:
        # Once the dead worker's lease (3 s here) runs out, the janitor takes over.
        def converged() -> bool:
            escrow_janitor.delay()
            return order_status(order_id) == Order.Status.IN_PROGRESS

        wait_until(converged, timeout=60, interval=1.0)
    finally:
        restarted.stop()

    assert tw.applied_count(contract, "fund_escrow") == 1
    assert tw.stats()["built"] == 2  # the deploy and the one funding
    assert JournalEntry.objects.filter(reference=f"order:{order_id}:escrow_funded").count() == 1
    assert balance(buyer) == {"available": "180.00", "reserved": "0.00"}
    assert tw.stroops(contract) == stroops("120")
    assert ledger_ok()


@pytest.mark.parametrize("fault", ["not_complete_yet", "timeout_after_apply"])
def test_a_transient_submit_error_that_landed_is_not_submitted_again(
    api, buyer, seller, tw_live, tw, fault
):
    fund(buyer, "300.00")
    order_id = create_order(api, buyer, seller)
    post(api, f"/orders/{order_id}/reserve", status=200)
    post(api, f"/orders/{order_id}/escrow")
    wait_until(lambda: escrow_status(order_id) == Escrow.Status.CREATED)
    contract = Escrow.objects.get(order__public_id=order_id).contract_id
    if fault == "not_complete_yet":
        tw.add_fault(fault, path="send-transaction", lands_after_requests=2)
    else:  # the answer comes after the worker's read timeout (2 s)
        tw.add_fault(fault, path="send-transaction", hold_seconds=4)

    post(api, f"/orders/{order_id}/escrow/fund")
    wait_until(lambda: order_status(order_id) == Order.Status.IN_PROGRESS)

    tx_hash = ChainStep.objects.get(escrow__order__public_id=order_id, key="fund").tx_hash
    assert tw.submissions(tx_hash) == 1
    assert tw.applied_count(contract, "fund_escrow") == 1
    assert tw.stats()["built"] == 2
    assert balance(buyer) == {"available": "180.00", "reserved": "0.00"}
    assert ledger_ok()
