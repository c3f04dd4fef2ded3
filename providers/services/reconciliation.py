"""The ledger against Airtm, for verify_ledger (see ledger.reconciliation).

Airtm has no balance of ours to compare with; what it tells us is the status of each payin
and payout, stored on the top-up or withdrawal (`airtm_status`) every time we read it. So the
check is per object, with no network call:

- the entries match the status: a SUCCEEDED top-up has its credit `topup:<id>:succeeded` and
  no other top-up has one; every withdrawal has `withdrawal:<id>:requested`, a COMPLETED one
  also `:completed`, a FAILED or CANCELED one also `:returned`, and no other has either;
- once our object is final, Airtm's last status does not end it the other way (a payin
  CONFIRMED at Airtm for a top-up we canceled: the payer paid and was never credited). The
  flows open that case as soon as they read such a fact (common.note_status_mismatch); this
  check finds it again every night until someone resolves it.

Live top-ups and withdrawals are the janitor's (stuck objects), not this check's.
"""

from collections.abc import Iterable

from ledger.integrity import Finding
from ledger.models import ReconciliationCase
from ledger.selectors import posted_references
from orchestrator.selectors import batched
from providers.models import TopUp, Withdrawal
from providers.services.common import flow_kind, status_mismatch
from providers.services.topups import PAYIN_TO_TOPUP
from providers.services.withdrawals import PAYOUT_TO_WITHDRAWAL

AIRTM = ReconciliationCase.Kind.AIRTM
W = Withdrawal.Status
WITHDRAWAL_ENTRIES = ("requested", "completed", "returned")


def airtm_check(*, remote: bool = False) -> list[Finding]:
    """Problems between the ledger and Airtm's last word on each top-up and withdrawal.

    `remote` changes nothing: Airtm is read by the flows and the janitor, not here.
    """
    findings: list[Finding] = []
    for topups in batched(TopUp.objects.order_by("pk")):
        posted = posted_references(references=(_topup_credit(t) for t in topups))
        for topup in topups:
            findings.extend(_topup_findings(topup, posted))
    for withdrawals in batched(Withdrawal.objects.order_by("pk")):
        posted = posted_references(references=_withdrawal_references(withdrawals))
        for withdrawal in withdrawals:
            findings.extend(_withdrawal_findings(withdrawal, posted))
    return findings


def _topup_credit(topup: TopUp) -> tuple[int, str]:
    return topup.marketplace_id, f"topup:{topup.public_id}:succeeded"


def _topup_findings(topup: TopUp, posted: set[tuple[int, str]]) -> Iterable[Finding]:
    if (mismatch := status_mismatch(topup, PAYIN_TO_TOPUP.get(topup.airtm_status))) is not None:
        yield mismatch
    succeeded = topup.status == TopUp.Status.SUCCEEDED
    credited = _topup_credit(topup) in posted
    if succeeded != credited:
        problem = "its credit entry is missing" if succeeded else "the user was credited"
        yield _entries_finding(topup, f"top-up {topup.public_id} is {topup.status} but {problem}")


def _withdrawal_references(withdrawals: list[Withdrawal]) -> Iterable[tuple[int, str]]:
    for withdrawal in withdrawals:
        for name in WITHDRAWAL_ENTRIES:
            yield withdrawal.marketplace_id, f"withdrawal:{withdrawal.public_id}:{name}"


def _withdrawal_findings(withdrawal: Withdrawal, posted: set[tuple[int, str]]) -> Iterable[Finding]:
    theirs = PAYOUT_TO_WITHDRAWAL.get(withdrawal.airtm_status)
    if (mismatch := status_mismatch(withdrawal, theirs)) is not None:
        yield mismatch
    expected = {
        "requested": True,
        "completed": withdrawal.status == W.COMPLETED,
        "returned": withdrawal.status in (W.FAILED, W.CANCELED),
    }
    wrong = [
        f"{'missing' if wanted else 'unexpected'} {name} entry"
        for name, wanted in expected.items()
        if wanted
        != ((withdrawal.marketplace_id, f"withdrawal:{withdrawal.public_id}:{name}") in posted)
    ]
    if wrong:
        summary = f"withdrawal {withdrawal.public_id} is {withdrawal.status}: {', '.join(wrong)}"
        yield _entries_finding(withdrawal, summary)


def _entries_finding(obj: TopUp | Withdrawal, summary: str) -> Finding:
    kind = flow_kind(obj)
    return Finding(
        kind=AIRTM,
        key=f"airtm:{kind}:{obj.public_id}:entries",
        summary=summary,
        marketplace_id=obj.marketplace_id,
        object_type=kind,
        object_id=obj.public_id,
        details={"status": obj.status, "amount": str(obj.amount), "currency": obj.currency},
    )
