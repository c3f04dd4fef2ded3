"""Tamper evidence and self-checks: sealing entries into a hash chain, and verifying it all.

Sealing is separate from posting so that the chain never serialises money movement: entries
are inserted unsealed, and ledger_seal gives each marketplace's committed, unsealed entries
the next sequence numbers in id order, each hash covering the previous one. An entry that
commits late simply gets a later sequence. Sealing runs right after commit in the embedded
mode and every few seconds from Celery beat; verification seals first.
"""

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum

from ledger.models import (
    Account,
    AccountShard,
    ChainHead,
    JournalEntry,
    Posting,
    ReconciliationCase,
)
from ledger.money import AMOUNT_QUANTUM


def entry_digest(
    prev_hash: str, entry: JournalEntry, postings: list[tuple[str, str, Decimal]]
) -> str:
    """sha256 over the previous hash and the entry's canonical form.

    `postings` are (account public id, currency, amount) triples.
    """
    lines = [
        prev_hash,
        entry.public_id,
        str(entry.sequence),
        entry.reference,
        entry.kind,
        entry.memo,
        json.dumps(entry.metadata, sort_keys=True, separators=(",", ":")),
        entry.created_at.isoformat(),
    ]
    for account_id, currency, amount in sorted(postings):
        lines.append(f"{account_id}|{currency}|{format(amount.quantize(AMOUNT_QUANTUM), 'f')}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _postings_by_entry(entry_ids: list[int]) -> dict[int, list[tuple[str, str, Decimal]]]:
    grouped: dict[int, list[tuple[str, str, Decimal]]] = defaultdict(list)
    rows = Posting.objects.filter(entry_id__in=entry_ids).values_list(
        "entry_id", "account__public_id", "currency", "amount"
    )
    for entry_id, account_id, currency, amount in rows:
        grouped[entry_id].append((account_id, currency, amount))
    return grouped


def ledger_seal(*, marketplace_id: int | None = None, batch: int = 500) -> int:
    """Seal every committed unsealed entry; returns how many were sealed."""
    pending = JournalEntry.objects.filter(hash="")
    if marketplace_id is not None:
        pending = pending.filter(marketplace_id=marketplace_id)
    sealed = 0
    for mkt in sorted(set(pending.values_list("marketplace_id", flat=True))):
        while count := _seal_batch(mkt, batch):
            sealed += count
    return sealed


def _seal_batch(marketplace_id: int, batch: int) -> int:
    with transaction.atomic():
        head = _chain_head(marketplace_id)
        entries = list(
            JournalEntry.objects.filter(marketplace_id=marketplace_id, hash="").order_by("id")[
                :batch
            ]
        )
        postings = _postings_by_entry([e.pk for e in entries])
        for entry in entries:
            entry.sequence = head.sequence + 1
            entry.prev_hash = head.hash
            entry.hash = entry_digest(head.hash, entry, postings[entry.pk])
            head.sequence, head.hash = entry.sequence, entry.hash
        JournalEntry.objects.bulk_update(entries, ["sequence", "prev_hash", "hash"])
        head.save(update_fields=["sequence", "hash"])
        return len(entries)


def _chain_head(marketplace_id: int) -> ChainHead:
    head = ChainHead.objects.select_for_update().filter(marketplace_id=marketplace_id).first()
    if head is not None:
        return head
    try:
        with transaction.atomic():
            ChainHead.objects.create(marketplace_id=marketplace_id)
    except IntegrityError:  # another sealer created it
        pass
    return ChainHead.objects.select_for_update().get(marketplace_id=marketplace_id)


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One problem a check found. `key` names the problem itself, the same on every run that
    sees it (a reconciliation case is open at most once per key); `summary` says it to a human.
    `kind` is a ReconciliationCase.Kind."""

    kind: str
    key: str
    summary: str
    marketplace_id: int | None = None
    object_type: str = ""
    object_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    entries: int = 0
    accounts: int = 0
    sealed_now: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [finding.summary for finding in self.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(
        self,
        key: str,
        summary: str,
        *,
        marketplace_id: int | None,
        object_type: str = "",
        object_id: str = "",
    ) -> None:
        self.findings.append(
            Finding(
                kind=ReconciliationCase.Kind.LEDGER,
                key=f"ledger:{key}",
                summary=summary,
                marketplace_id=marketplace_id,
                object_type=object_type,
                object_id=object_id,
            )
        )

    def add_failed(
        self,
        checks: list[tuple[str, bool, str]],
        object_type: str,
        object_id: str,
        where: str,
        marketplace_id: int | None,
    ) -> None:
        """A finding for each (name, failed, problem) check of one object that failed."""
        for name, failed, problem in checks:
            if failed:
                self.add(
                    f"{object_type}:{object_id}:{name}",
                    f"{where}: {problem}",
                    marketplace_id=marketplace_id,
                    object_type=object_type,
                    object_id=object_id,
                )


def ledger_verify(*, seal: bool = True) -> VerifyReport:
    """Recompute every balance from postings, check the trial balance and walk every chain."""
    report = VerifyReport(sealed_now=ledger_seal() if seal else 0)
    _verify_balances(report)
    _verify_trial_balance(report)
    _verify_chains(report)
    return report


def _verify_balances(report: VerifyReport) -> None:
    from_postings = dict(
        Posting.objects.values("account_id")
        .annotate(total=Sum("amount"))
        .values_list("account_id", "total")
    )
    shards = dict(
        AccountShard.objects.values("account_id")
        .annotate(total=Sum("balance"))
        .values_list("account_id", "total")
    )
    for pk, public_id, mkt, bounded_balance, allow_negative in Account.objects.values_list(
        "pk", "public_id", "marketplace_id", "balance", "allow_negative"
    ).iterator():
        report.accounts += 1
        stored = exact_total(shards.get(pk, Decimal(0)) if allow_negative else bounded_balance)
        expected = exact_total(from_postings.get(pk, Decimal(0)))
        problems = [
            (
                "balance",
                stored != expected,
                f"stored balance {stored} != sum of postings {expected}",
            ),
            ("negative", not allow_negative and expected < 0, f"negative balance {expected}"),
        ]
        report.add_failed(problems, "account", public_id, f"account {public_id}", mkt)


def exact_total(total: Decimal) -> Decimal:
    """A sum as the ledger's amounts are: SQLite adds decimals as binary floats, so a sum
    that is zero can come back as 5.55E-17 there."""
    return total.quantize(AMOUNT_QUANTUM)


def _verify_trial_balance(report: VerifyReport) -> None:
    for entry_id, mkt, currency, total in (
        Posting.objects.values("entry_id", "currency")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .values_list("entry__public_id", "entry__marketplace_id", "currency", "total")
    ):
        if exact_total(total):
            report.add(
                f"ledger_entry:{entry_id}:unbalanced:{currency}",
                f"entry {entry_id}: {currency} postings sum to {total}, not 0",
                marketplace_id=mkt,
                object_type="ledger_entry",
                object_id=entry_id,
            )
    for mkt, currency, total in (
        Posting.objects.values("entry__marketplace_id", "currency")
        .annotate(total=Sum("amount"))
        .exclude(total=0)
        .values_list("entry__marketplace_id", "currency", "total")
    ):
        if exact_total(total):
            report.add(
                f"marketplace:{mkt}:trial_balance:{currency}",
                f"marketplace {mkt}: trial balance in {currency} is {total}, not 0",
                marketplace_id=mkt,
            )


def _verify_chains(report: VerifyReport, batch: int = 1000) -> None:
    heads = dict(ChainHead.objects.values_list("marketplace_id", "hash"))
    for mkt in sorted(set(JournalEntry.objects.values_list("marketplace_id", flat=True))):
        prev_hash, expected_sequence, last_sequence = "", 1, 0
        while True:
            entries = list(
                JournalEntry.objects.filter(
                    marketplace_id=mkt, sequence__isnull=False, sequence__gt=last_sequence
                ).order_by("sequence")[:batch]
            )
            if not entries:
                break
            postings = _postings_by_entry([e.pk for e in entries])
            for entry in entries:
                report.entries += 1
                _verify_link(report, entry, postings[entry.pk], prev_hash, expected_sequence)
                prev_hash, expected_sequence = entry.hash, (entry.sequence or 0) + 1
            last_sequence = entries[-1].sequence or 0
        if heads.get(mkt, "") != prev_hash:
            report.add(
                f"marketplace:{mkt}:chain_head",
                f"marketplace {mkt}: chain head does not match the last entry",
                marketplace_id=mkt,
            )
        unsealed = JournalEntry.objects.filter(marketplace_id=mkt, hash="").count()
        if unsealed:
            report.add(
                f"marketplace:{mkt}:unsealed",
                f"marketplace {mkt}: {unsealed} entries are not sealed",
                marketplace_id=mkt,
            )


def _verify_link(
    report: VerifyReport,
    entry: JournalEntry,
    postings: list[tuple[str, str, Decimal]],
    prev_hash: str,
    expected_sequence: int,
) -> None:
    mkt = entry.marketplace_id
    where = f"entry {entry.public_id} (marketplace {mkt}, sequence {entry.sequence})"
    checks = [
        ("sequence", entry.sequence != expected_sequence, f"expected sequence {expected_sequence}"),
        ("link", entry.prev_hash != prev_hash, "does not link to the previous entry"),
        (
            "hash",
            entry_digest(entry.prev_hash, entry, postings) != entry.hash,
            "hash does not match its contents",
        ),
    ]
    report.add_failed(checks, "ledger_entry", entry.public_id, where, mkt)
