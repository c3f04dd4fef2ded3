"""The dispute queue in the admin: filters, assign to me, evidence and notes, and the
decision form (preview of each side's net after fees, a reason, the API's service)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from escrow.models import ChainStep, Dispute, DisputeNote, Order
from escrow.services.disputes import dispute_assign
from orchestrator.models import AuditLog, Event
from tests.providers.support import balance, ledger_ok

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

QUEUE = "/admin/escrow/dispute/"


def page(dispute: Dispute) -> str:
    return f"{QUEUE}{dispute.pk}/change/"


def fresh(dispute: Dispute) -> Dispute:
    """The dispute as stored now (refresh_from_db cannot set a protected FSM field)."""
    return Dispute.objects.select_related("assignee").get(pk=dispute.pk)


def shown(response) -> list[str]:
    return [d.public_id for d in response.context["cl"].result_list]


def test_the_queue_lists_oldest_first_and_filters_by_status_age_assignee_and_marketplace(
    staff_client, bare_dispute, other_marketplace, make_staff
):
    client = staff_client("support", "ana")
    ana = User.objects.get(username="ana")
    old = bare_dispute()
    Dispute.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=9))
    mine = bare_dispute()
    dispute_assign(dispute=mine, assigned_to="ana", assignee=ana)
    Dispute.objects.filter(pk=mine.pk).update(created_at=timezone.now() - timedelta(days=2))
    theirs = bare_dispute()
    dispute_assign(dispute=theirs, assigned_to="bo", assignee=make_staff("support", "bo"))
    elsewhere = bare_dispute(other_marketplace)

    everything = client.get(QUEUE)
    open_only = client.get(QUEUE, {"status__exact": "OPEN"})
    over_a_week = client.get(QUEUE, {"age": "older"})
    this_week = client.get(QUEUE, {"age": "week"})
    today = client.get(QUEUE, {"age": "day"})
    assigned_to_me = client.get(QUEUE, {"assignee": "me"})
    unassigned = client.get(QUEUE, {"assignee": "none"})
    other_market = client.get(QUEUE, {"marketplace__id__exact": other_marketplace.pk})

    assert everything.status_code == 200
    assert shown(everything) == [
        old.public_id,
        mine.public_id,
        theirs.public_id,
        elsewhere.public_id,
    ]
    assert shown(open_only) == [old.public_id, elsewhere.public_id]
    assert shown(over_a_week) == [old.public_id]
    assert shown(this_week) == [mine.public_id]
    assert shown(today) == [theirs.public_id, elsewhere.public_id]
    assert shown(assigned_to_me) == [mine.public_id]
    assert shown(unassigned) == [old.public_id, elsewhere.public_id]
    assert shown(other_market) == [elsewhere.public_id]


def test_assign_to_me_puts_an_open_dispute_under_review_in_my_name(staff_client, bare_dispute):
    client = staff_client("support", "ana")
    dispute = bare_dispute()

    response = client.post(f"{QUEUE}{dispute.pk}/assign/")

    dispute = fresh(dispute)
    assert response.status_code == 302
    assert dispute.status == Dispute.Status.UNDER_REVIEW
    assert (dispute.assignee_id, dispute.assigned_to) == (
        User.objects.get(username="ana").pk,
        "ana",
    )
    assert dispute.assigned_at is not None
    row = AuditLog.objects.get(action="dispute.status_changed", object_id=dispute.public_id)
    assert (row.actor_kind, row.actor_id) == ("staff", "ana")
    assert row.after == {"status": "UNDER_REVIEW", "assigned_to": "ana"}
    assert Event.objects.filter(aggregate_id=dispute.public_id, type="dispute.under_review")


def test_another_agent_can_take_over_an_undecided_dispute_with_the_action(
    staff_client, bare_dispute, make_staff
):
    first, second = bare_dispute(), bare_dispute()
    dispute_assign(dispute=first, assigned_to="bo", assignee=make_staff("support", "bo"))
    client = staff_client("support", "ana")

    response = client.post(
        QUEUE, {"action": "assign_to_me", "_selected_action": [first.pk, second.pk]}
    )

    assert response.status_code == 302
    ana = User.objects.get(username="ana")
    for row in (fresh(first), fresh(second)):
        assert (row.status, row.assignee_id) == ("UNDER_REVIEW", ana.pk)
    taken = AuditLog.objects.get(action="dispute.reassigned")
    assert (taken.object_id, taken.before, taken.after) == (
        first.public_id,
        {"assigned_to": "bo"},
        {"assigned_to": "ana"},
    )


def test_the_dispute_page_shows_the_evidence_and_keeps_staff_notes(staff_client, disputed):
    dispute = disputed()
    client = staff_client("support", "ana")

    added = client.post(f"{QUEUE}{dispute.pk}/notes/", {"body": "Called the seller."})
    empty = client.post(f"{QUEUE}{dispute.pk}/notes/", {"body": "   "})
    shown_page = client.get(page(dispute))

    assert (added.status_code, empty.status_code) == (302, 302)
    note = DisputeNote.objects.get()
    assert (note.dispute_id, note.author.username, note.body) == (
        dispute.pk,
        "ana",
        "Called the seller.",
    )
    assert AuditLog.objects.get(action="dispute.note_added").actor_id == "ana"
    html = shown_page.content.decode()
    assert shown_page.status_code == 200
    assert '<a href="https://evidence.example/brief.pdf"' in html
    assert "chat log of 3 May" in html
    assert "The logo is not what was agreed." in html
    assert "Called the seller." in html
    assert "A note needs some text." in [str(m) for m in shown_page.context["messages"]]


def decide_url(dispute: Dispute) -> str:
    return f"{QUEUE}{dispute.pk}/resolve/"


SPLIT = {"decision": "SPLIT", "release_amount": "72.00", "refund_amount": "48.00"}


def preview_then_confirm(client, dispute: Dispute, body: dict[str, str]):
    """Preview `body`, then confirm it with the fingerprint the preview showed."""
    previewed = client.post(decide_url(dispute), {**body, "_preview": "1"})
    fingerprint = previewed.context["preview"].fingerprint()
    return client.post(decide_url(dispute), {**body, "_confirm": "1", "fingerprint": fingerprint})


def under_review(dispute: Dispute) -> Dispute:
    return dispute_assign(dispute=dispute, assigned_to="ana")


def test_the_preview_shows_each_sides_net_after_fees_and_changes_nothing(staff_client, disputed):
    dispute = under_review(disputed(amount="120.00", fee_bps=250))
    client = staff_client("support", "ana")

    form = client.get(decide_url(dispute))
    response = client.post(decide_url(dispute), {**SPLIT, "reason": "half", "_preview": "1"})

    assert form.status_code == 200
    preview = response.context["preview"]
    sides = {side.party: side for side in preview.sides}
    # Fees 0.36 (Trustless Work) + 3.00 (platform) on 120, charged pro rata: 2.016 on 72.
    assert (sides["seller"].gross.text(), sides["seller"].fees.text()) == ("72.00", "2.0160000")
    assert sides["seller"].net_on_chain.text() == "69.9840000"
    assert sides["seller"].credited.text() == "69.98"
    # The buyer's part comes back whole: the platform bears its fees (the default).
    assert (sides["buyer"].net_on_chain.text(), sides["buyer"].credited.text()) == (
        "46.6560000",
        "48.00",
    )
    assert (preview.trustless_work_fee.text(), preview.platform_fee.text()) == (
        "0.3600000",
        "3.0000000",
    )
    html = response.content.decode()
    assert '<td class="net"><b>69.98</b></td>' in html
    assert 'name="fingerprint"' in html
    assert 'id="confirm-decision"' in html
    dispute = fresh(dispute)
    assert (dispute.status, dispute.decision) == (Dispute.Status.UNDER_REVIEW, "")
    assert not ChainStep.objects.filter(action="resolve").exists()


def test_a_decision_needs_a_reason(staff_client, disputed):
    dispute = under_review(disputed())
    client = staff_client("support")

    response = client.post(decide_url(dispute), {**SPLIT, "reason": "  ", "_preview": "1"})

    assert response.context["preview"] is None
    assert response.context["form"].errors["reason"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {**SPLIT, "refund_amount": "47.99"},
            "__all__",
            "must add up to 120.00 USD",
        ),
        ({"decision": "SPLIT", "release_amount": "72.00"}, "refund_amount", "Required"),
        ({"decision": "FULL_REFUND", "refund_amount": "120.00"}, "refund_amount", "Only for"),
        ({**SPLIT, "release_amount": "72.001"}, "release_amount", "at most 2 decimals"),
    ],
)
def test_the_form_refuses_what_the_service_refuses(staff_client, disputed, body, field, message):
    dispute = under_review(disputed())
    client = staff_client("support")

    response = client.post(decide_url(dispute), {**body, "reason": "r", "_confirm": "1"})

    assert response.status_code == 200
    assert response.context["preview"] is None
    assert message in " ".join(response.context["form"].errors[field])
    dispute = fresh(dispute)
    assert dispute.decision == ""


def test_confirming_other_figures_than_the_preview_shows_them_again(staff_client, disputed):
    dispute = under_review(disputed())
    client = staff_client("support")
    first = client.post(decide_url(dispute), {**SPLIT, "reason": "r", "_preview": "1"})

    changed = {**SPLIT, "release_amount": "60.00", "refund_amount": "60.00"}
    response = client.post(
        decide_url(dispute),
        {
            **changed,
            "reason": "r",
            "_confirm": "1",
            "fingerprint": first.context["preview"].fingerprint(),
        },
    )

    assert response.status_code == 200
    assert response.context["preview"].release.text() == "60.00"
    dispute = fresh(dispute)
    assert dispute.decision == ""


def test_confirming_the_preview_decides_through_the_service_and_the_chain_pays_out(
    staff_client, disputed, buyer, seller, django_capture_on_commit_callbacks
):
    dispute = under_review(disputed(amount="120.00", fee_bps=250))
    client = staff_client("support", "ana")

    with django_capture_on_commit_callbacks(execute=True):
        response = preview_then_confirm(client, dispute, {**SPLIT, "reason": "half each"})

    assert response.status_code == 302
    dispute = fresh(dispute)
    order = Order.objects.get(pk=dispute.order_id)
    assert (dispute.status, dispute.decision, dispute.decided_by) == (
        "RESOLVED",
        "SPLIT",
        "staff:ana",
    )
    assert (dispute.release_amount, dispute.refund_amount) == (Decimal("72"), Decimal("48"))
    assert (order.status, order.outcome) == ("CLOSED", "SPLIT")
    # What the preview said each balance would be credited.
    assert balance(seller) == {"available": "69.98"}
    assert balance(buyer) == {"available": "928.00", "reserved": "0.00"}
    decided = AuditLog.objects.get(action="dispute.decided", object_id=dispute.public_id)
    assert (decided.actor_kind, decided.actor_id, decided.reason) == ("staff", "ana", "half each")
    assert decided.after == {
        "decision": "SPLIT",
        "release_amount": "72.00",
        "refund_amount": "48.00",
        "held": "120.00",
    }
    assert ledger_ok()


def test_a_decided_dispute_has_no_decision_form(staff_client, disputed):
    dispute = under_review(disputed())
    client = staff_client("support")
    preview_then_confirm(client, dispute, {"decision": "FULL_REFUND", "reason": "r"})

    again = client.post(
        decide_url(dispute), {"decision": "FULL_REFUND", "reason": "r", "_preview": "1"}
    )
    shown_page = client.get(page(dispute))

    assert "decided already" in " ".join(again.context["form"].non_field_errors())
    assert shown_page.context["can_resolve"] is False
    assert 'id="decide-link"' not in shown_page.content.decode()
