"""The user page (balances and statement) and the CSV exports of statements and of ledger
entries for a date range."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from ledger.adjustments import adjustment_request
from ledger.selectors import statement_lines
from ledger.services import hold_place, transfer_post
from orchestrator.backoffice import DateRangeForm
from tests.backoffice.conftest import days_ago
from tests.ledger.conftest import available, fund, usd

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(buyer, seller):
    """The buyer's money over ten days: funded, paid the seller, reserved some."""
    with time_machine.travel(days_ago(10), tick=False):
        fund(buyer, usd("100"))
    with time_machine.travel(days_ago(5), tick=False):
        transfer_post(
            source=available(buyer),
            destination=available(seller),
            amount=usd("30"),
            reference="pay-seller",
        )
    with time_machine.travel(days_ago(3), tick=False):
        hold_place(user=buyer, amount=usd("20"), reference="order-1")


def day(days: int) -> str:
    return (timezone.now() - timedelta(days=days)).date().isoformat()


def bounds(start: str, end: str):
    form = DateRangeForm({"start": start, "end": end})
    assert form.is_valid(), form.errors
    return form.bounds()


def rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def statement_url(user) -> str:
    return f"/admin/orchestrator/marketplaceuser/{user.pk}/statement.csv"


def test_statement_lines_carry_each_account_running_balance_from_the_opening(buyer, history):
    start, end = bounds(day(6), day(0))

    lines = list(statement_lines(user=buyer, start=start, end=end))

    assert sorted(
        (line.account, line.amount.text(), line.balance_after.text()) for line in lines
    ) == [
        ("available", "-20.00", "50.00"),
        ("available", "-30.00", "70.00"),
        ("reserved", "20.00", "20.00"),
    ]
    assert lines[0].kind == "transfer"  # oldest first


def test_the_statement_csv_lists_the_range_only_with_balances(buyer, history, staff_client):
    client = staff_client("finance")

    response = client.get(statement_url(buyer), {"start": day(6), "end": day(4)})

    table = rows(response)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"statement-{buyer.public_id}-" in response["Content-Disposition"]
    assert table[0] == [
        "created_at",
        "entry_id",
        "kind",
        "reference",
        "account",
        "currency",
        "amount",
        "balance_after",
        "memo",
    ]
    assert [(r[3], r[4], r[5], r[6], r[7]) for r in table[1:]] == [
        ("pay-seller", "available", "USD", "-30.00", "70.00")
    ]


def test_free_text_in_the_csv_cannot_become_a_spreadsheet_formula(buyer, finance, staff_client):
    adjustment_request(
        user=buyer,
        amount=usd("5"),
        direction="credit",
        reason='=HYPERLINK("http://evil.example","fix")',
        requested_by=finance,
    )

    table = rows(staff_client("finance").get(statement_url(buyer)))

    memo = table[1][8]
    assert memo == '\'=HYPERLINK("http://evil.example","fix")'
    assert table[1][6] == "5.00"


def test_a_range_that_ends_before_it_starts_is_refused(buyer, staff_client):
    response = staff_client("finance").get(statement_url(buyer), {"start": day(1), "end": day(3)})

    assert response.status_code == 400


def test_the_user_page_shows_balances_and_the_statement(buyer, history, staff_client):
    response = staff_client("finance").get(
        f"/admin/orchestrator/marketplaceuser/{buyer.pk}/change/", {"start": day(6), "end": day(0)}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="balances"' in page
    assert "<td>50.00</td><td>20.00</td><td>0.00</td><td><strong>70.00</strong></td>" in page
    assert "pay-seller" in page
    assert "Opening balances:" in page
    assert "available 100.00 USD" in page
    assert f"{statement_url(buyer)}?start={day(6)}&amp;end={day(0)}" in page


def test_the_ledger_export_lists_every_posting_of_the_range_for_one_marketplace(
    buyer, history, make_marketplace, make_user, staff_client
):
    other = make_user(make_marketplace("Elsewhere"))
    fund(other, usd("7"))
    client = staff_client("finance")

    form_page = client.get("/admin/ledger/journalentry/export/")
    response = client.get(
        "/admin/ledger/journalentry/export/",
        {"start": day(6), "end": day(0), "marketplace": buyer.marketplace_id},
    )

    table = rows(response)
    assert form_page.status_code == 200
    assert b'name="start"' in form_page.content
    assert response.status_code == 200
    assert table[0][:6] == [
        "created_at",
        "entry_id",
        "marketplace_id",
        "sequence",
        "reference",
        "kind",
    ]
    references = sorted({row[4] for row in table[1:]})
    assert references == ["hold:order-1:place", "pay-seller"]
    assert sum(1 for _ in table[1:]) == 4  # two postings per entry
    amounts = sorted(row[10] for row in table[1:] if row[4] == "pay-seller")
    assert amounts == ["-30.00", "30.00"]


def test_without_a_marketplace_the_ledger_export_covers_every_marketplace(
    buyer, history, make_marketplace, make_user, staff_client
):
    other = make_user(make_marketplace("Elsewhere"))
    fund(other, usd("7"))

    table = rows(
        staff_client("finance").get(
            "/admin/ledger/journalentry/export/", {"start": day(10), "end": day(0)}
        )
    )

    assert {row[2] for row in table[1:]} == {
        buyer.marketplace.public_id,
        other.marketplace.public_id,
    }
