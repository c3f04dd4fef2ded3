"""The order page: its whole timeline in one place (state transitions, domain events, ledger
entries, chain steps and provider calls with their references, webhook deliveries) and
links to the buyer, the seller, the escrow contract and the ledger's transactions."""

import pytest
from django.urls import reverse

from escrow.models import ChainStep, Dispute, Escrow, Order
from escrow.services.disputes import dispute_assign, dispute_resolve
from ledger.models import JournalEntry
from ledger.money import Money
from providers.recording import record_call
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def settled(disputed, make_endpoint, marketplace, django_capture_on_commit_callbacks) -> Order:
    """An order split by a dispute decision, whose events went to a webhook endpoint, and a
    provider call recorded against its contract."""
    make_endpoint(marketplace, "http://127.0.0.1:9/hook", ["order.*"])
    dispute = disputed(amount="120.00", fee_bps=250)
    with django_capture_on_commit_callbacks(execute=False):  # deliveries stay pending
        dispute_assign(dispute=dispute, assigned_to="ana")
    with django_capture_on_commit_callbacks(execute=True):
        dispute_resolve(
            dispute=dispute,
            decision="SPLIT",
            release_amount=Money.of("72.00", "USD"),
            refund_amount=Money.of("48.00", "USD"),
            note="half each",
        )
    escrow = Escrow.objects.get(order_id=dispute.order_id)
    record_call(
        provider="trustless_work",
        operation="get_escrow",
        method="GET",
        path="/helper/get-escrow-by-contract-ids",
        reference=escrow.contract_id,
        request_body=None,
        response_status=200,
        response_text="[]",
        outcome="ok",
        error="",
        duration_ms=12,
    )
    return Order.objects.get(pk=dispute.order_id)


def order_page(client, order: Order):
    response = client.get(f"/admin/escrow/order/{order.pk}/change/")
    assert response.status_code == 200
    return response


def test_the_order_page_shows_the_whole_timeline_oldest_first(staff_client, settled):
    response = order_page(staff_client("admin"), settled)

    rows = response.context["timeline"]
    items = [item for item, _, _ in rows]
    kinds = {item.kind for item in items}
    titles = {(item.kind, item.title) for item in items}
    assert kinds == {"transition", "event", "ledger", "chain_step", "provider_call", "webhook"}
    assert [item.at for item in items] == sorted(item.at for item in items)
    assert ("transition", "order.status_changed") in titles
    assert ("transition", "dispute.decided") in titles
    assert ("event", "order.disputed") in titles
    assert ("event", "dispute.resolved") in titles
    assert ("ledger", f"order:{settled.public_id}:escrow_funded") in titles
    assert ("ledger", f"order:{settled.public_id}:resolution") in titles
    assert ("chain_step", "fund") in titles
    assert ("provider_call", "trustless_work get_escrow") in titles
    # Every order.* event went to the endpoint.
    order_events = [i for i in items if i.kind == "event" and i.title.startswith("order.")]
    deliveries = [i for i in items if i.kind == "webhook"]
    assert len(deliveries) == len(order_events) == WebhookDelivery.objects.count()
    assert all(d.title.endswith("to http://127.0.0.1:9/hook") for d in deliveries)


def test_timeline_rows_carry_references_and_link_to_their_records(staff_client, settled):
    response = order_page(staff_client("admin"), settled)

    by_title = {
        (item.kind, item.title): (item, url, dict(details))
        for item, url, details in response.context["timeline"]
    }
    escrow = Escrow.objects.get(order=settled)
    resolve = ChainStep.objects.get(escrow=escrow, action="resolve")
    _, step_url, step_details = by_title[("chain_step", resolve.key)]
    assert step_details["tx_hash"] == resolve.tx_hash != ""
    assert step_details["reference"] == f"order:{settled.public_id}:resolution"
    assert step_url == reverse("admin:escrow_chainstep_change", args=[resolve.pk])
    entry = JournalEntry.objects.get(reference=f"order:{settled.public_id}:resolution")
    _, entry_url, entry_details = by_title[("ledger", entry.reference)]
    assert entry_url == reverse("admin:ledger_journalentry_change", args=[entry.pk])
    assert "69.98 USD" in entry_details["postings"]
    _, call_url, call_details = by_title[("provider_call", "trustless_work get_escrow")]
    assert call_details["reference"] == escrow.contract_id
    assert call_url.startswith("/admin/providers/providercall/")
    html = response.content.decode()
    assert f'href="{entry_url}"' in html
    assert resolve.tx_hash in html


def test_the_trustless_work_requests_of_the_order_are_on_its_timeline(staff_client, settled):
    rows = order_page(staff_client("admin"), settled).context["timeline"]

    escrow = Escrow.objects.get(order=settled)
    submits = {
        (item.title, dict(details)["reference"])
        for item, _, details in rows
        if item.kind == "provider_call" and item.title.startswith("trustless_work submit_")
    }
    deploy = ChainStep.objects.get(escrow=escrow, action=ChainStep.Action.DEPLOY)
    fund = ChainStep.objects.get(escrow=escrow, action=ChainStep.Action.FUND)
    assert fund.tx_hash
    assert deploy.tx_hash
    # Recorded by the client itself: the deploy under its tx hash (no contract yet), the
    # funding under the contract.
    assert any(ref == deploy.tx_hash for _, ref in submits), submits
    assert any(ref == escrow.contract_id and "fund" in title for title, ref in submits), submits


def test_the_order_page_links_buyer_seller_escrow_contract_and_dispute(
    staff_client, settled, buyer, seller
):
    response = order_page(staff_client("support"), settled)

    links = {what: (text, url) for what, text, url in response.context["links"]}
    escrow = Escrow.objects.get(order=settled)
    dispute = Dispute.objects.get(order=settled)
    assert links["Buyer"][1] == reverse(
        "admin:orchestrator_marketplaceuser_change", args=[buyer.pk]
    )
    assert links["Seller"][1] == reverse(
        "admin:orchestrator_marketplaceuser_change", args=[seller.pk]
    )
    assert escrow.contract_id in links["Escrow contract"][0]
    assert links["Escrow contract"][1] == reverse("admin:escrow_escrow_change", args=[escrow.pk])
    assert links["Dispute"][1] == reverse("admin:escrow_dispute_change", args=[dispute.pk])
    html = response.content.decode()
    assert f'href="{links["Buyer"][1]}"' in html
    assert escrow.contract_id in html


def test_rows_link_only_to_records_the_role_may_open(staff_client, settled):
    support = order_page(staff_client("support"), settled).context["timeline"]
    finance = order_page(staff_client("finance", "fin"), settled).context["timeline"]

    def urls(rows, kind):
        return {bool(url) for item, url, _ in rows if item.kind == kind}

    # Support reads orders and the ledger, not provider calls or webhook deliveries.
    assert urls(support, "ledger") == {True}
    assert urls(support, "provider_call") == {False}
    assert urls(support, "webhook") == {False}
    assert urls(finance, "provider_call") == {True}
    assert urls(finance, "webhook") == {True}


def test_the_api_timeline_leaves_provider_calls_and_deliveries_out(api, settled):
    body = api.get(f"/api/v1/orders/{settled.public_id}").json()

    kinds = {item["kind"] for item in body["timeline"]}
    assert kinds == {"transition", "event", "ledger", "chain_step"}
