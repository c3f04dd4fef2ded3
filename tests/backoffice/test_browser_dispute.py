"""In a real browser (Playwright driving Debian's Chromium, headless): a support agent logs
in, takes a dispute, decides a split through the form after previewing it, and the money
lands as previewed, with the decision in the audit log and on the order's timeline.

Screenshots of the decision form and of the order timeline are written to test-artifacts/
(or $TEST_ARTIFACTS_DIR). Chromium is /usr/bin/chromium (`apt-get install chromium`; .ci/run
installs it): without it this test is skipped locally and fails on CI.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from escrow.models import Dispute, Order
from orchestrator.models import AuditLog
from tests.backoffice.conftest import PASSWORD
from tests.providers.support import balance, ledger_ok

pytestmark = [pytest.mark.postgres]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS_DIR") or Path(__file__).resolve().parents[2] / "test-artifacts"
)


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A page of a headless Chromium; the ORM may be used between browser calls."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread, which makes Django refuse
    # ORM calls; the test's own reads between browser steps are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(30_000)
            yield context.new_page()
        finally:
            browser.close()
            # The ORM calls made while Playwright's loop ran used connections of their own
            # (asgiref's context-local storage): close them, or the test database cannot be
            # dropped at the end of the session.
            connections.close_all()


def test_support_resolves_a_dispute_with_a_split_in_the_browser(
    live_server, disputed, make_staff, buyer, seller, page
):
    dispute = disputed(amount="120.00", fee_bps=250)
    agent = make_staff("support", "ana")
    base = live_server.url

    # Log in and open the dispute from the queue.
    page.goto(f"{base}/admin/login/?next=/admin/escrow/dispute/")
    page.fill("#id_username", "ana")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.get_by_role("link", name=dispute.public_id).click()
    page.wait_for_selector("#dispute-evidence")
    assert "https://evidence.example/brief.pdf" in page.inner_text("#dispute-evidence")

    # Take it, note it, and open the decision form.
    page.click("#assign-form input[type=submit]")
    page.wait_for_selector("#decide-link")
    page.fill("#note-form textarea", "Seller delivered 60 %; buyer agrees to a split.")
    page.click("#note-form input[type=submit]")
    page.click("#decide-link")

    # Split 72 / 48, preview, check each side's net, then confirm.
    page.check("input[name=decision][value=SPLIT]")
    page.fill("#id_release_amount", "72.00")
    page.fill("#id_refund_amount", "48.00")
    page.fill("#id_reason", "Partial delivery: 60 % to the seller.")
    page.click("input[name=_preview]")
    page.wait_for_selector("#resolution-preview")
    assert page.inner_text("#preview-seller td.net") == "69.98"
    assert page.inner_text("#preview-buyer td.net") == "48.00"
    page.screenshot(path=str(ARTIFACTS / "dispute-resolution-form.png"), full_page=True)
    page.click("#confirm-decision")
    page.wait_for_selector("ul.messagelist li.success")
    assert "decided (SPLIT)" in page.inner_text("ul.messagelist")

    # The chain paid out (the tasks ran in-process after commit), as previewed.
    decided = Dispute.objects.get(pk=dispute.pk)
    order = Order.objects.get(pk=dispute.order_id)
    assert (decided.status, decided.decision, decided.assignee_id) == (
        "RESOLVED",
        "SPLIT",
        agent.pk,
    )
    assert (order.status, order.outcome) == ("CLOSED", "SPLIT")
    assert balance(seller) == {"available": "69.98"}
    assert balance(buyer) == {"available": "928.00", "reserved": "0.00"}
    audit = AuditLog.objects.get(action="dispute.decided", object_id=dispute.public_id)
    assert (audit.actor_kind, audit.actor_id, audit.reason) == (
        "staff",
        "ana",
        "Partial delivery: 60 % to the seller.",
    )
    assert ledger_ok()

    # The order's timeline shows the decision, the chain's payout and the ledger entry.
    page.click("text=Order timeline")
    page.wait_for_selector("#order-timeline")
    timeline = page.inner_text("#order-timeline")
    assert "dispute.decided" in timeline
    assert "staff:ana" in timeline
    assert f"order:{order.public_id}:resolution" in timeline
    page.screenshot(path=str(ARTIFACTS / "order-timeline.png"), full_page=True)
    assert (ARTIFACTS / "dispute-resolution-form.png").stat().st_size > 10_000
    assert (ARTIFACTS / "order-timeline.png").stat().st_size > 10_000
