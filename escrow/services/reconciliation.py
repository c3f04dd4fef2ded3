"""The ledger against Trustless Work, for verify_ledger (see ledger.reconciliation).

Each order's escrow contract has a ledger account `escrow:<order>` (USDC) mirroring the
contract's balance: credited with the order's amount when the chain confirms the funding, and
debited by each release, refund or dispute decision the chain confirms (escrow.postings).

- Always: the account agrees with the escrow's state as we last confirmed it on chain: empty
  before the funding and after the end (released, refunded, resolved, abandoned, failed),
  holding more than nothing and at most the escrow's amount in between.
- With `remote` (the nightly run): the account equals the contract's balance as Trustless
  Work reads it, for every escrow that holds money. Read in batches, outside any transaction;
  if Trustless Work cannot be read the check fails as a whole and its open cases stay open.
"""

from collections.abc import Iterable
from decimal import Decimal
from itertools import groupby

from escrow.models import Escrow
from escrow.services.common import tw_client
from ledger.integrity import Finding
from ledger.models import ReconciliationCase
from ledger.money import Money
from ledger.selectors import system_balances
from orchestrator.selectors import batched

S = Escrow.Status
HOLDING = (S.FUNDED, S.RELEASING, S.REFUNDING, S.DISPUTED)
BALANCE_BATCH = 50  # contract ids per Trustless Work balance request


def trustless_work_check(*, remote: bool = False) -> list[Finding]:
    """Problems between the ledger's escrow accounts and the escrows' contracts."""
    ledger = system_balances(code_prefix="escrow:", currency="USDC")
    findings: list[Finding] = []
    holding: list[tuple[Escrow, Decimal]] = []
    for escrows in batched(Escrow.objects.select_related("order").order_by("pk")):
        for escrow in escrows:
            balance = ledger.get((escrow.marketplace_id, f"escrow:{escrow.order.public_id}"))
            balance = balance or Decimal(0)
            findings.extend(_state_findings(escrow, balance))
            if remote and escrow.status in HOLDING and escrow.contract_id:
                holding.append((escrow, balance))
    if holding:
        findings.extend(_chain_findings(holding))
    return findings


def _state_findings(escrow: Escrow, balance: Decimal) -> Iterable[Finding]:
    if escrow.status in HOLDING:
        if 0 < balance <= escrow.amount:
            return
        expected = f"between 0 and {_usdc(escrow.amount)}"
    elif balance == 0:
        return
    else:
        expected = "0"
    yield _finding(
        escrow,
        "state",
        f"escrow {escrow.public_id} is {escrow.status} but its ledger account holds "
        f"{_usdc(balance)} USDC (expected {expected})",
        ledger=_usdc(balance),
    )


def _chain_findings(holding: list[tuple[Escrow, Decimal]]) -> Iterable[Finding]:
    by_kind = sorted(holding, key=lambda pair: pair[0].kind)
    for kind, group in groupby(by_kind, key=lambda pair: pair[0].kind):
        pairs = list(group)
        for start in range(0, len(pairs), BALANCE_BATCH):
            batch = pairs[start : start + BALANCE_BATCH]
            signer = str(batch[0][0].roles.get("platform_address", ""))
            read = tw_client().get_balances(
                [escrow.contract_id for escrow, _ in batch], signer=signer, escrow_type=kind
            )
            on_chain = {b.address: b.balance for b in read}
            for escrow, balance in batch:
                chain = on_chain.get(escrow.contract_id)
                if chain is None:
                    summary = f"Trustless Work has no balance for escrow {escrow.public_id}"
                    yield _finding(escrow, "chain", summary, ledger=_usdc(balance))
                elif _usdc(chain) != _usdc(balance):
                    summary = (
                        f"escrow {escrow.public_id}: the ledger holds {_usdc(balance)} USDC, "
                        f"the contract {_usdc(chain)}"
                    )
                    yield _finding(
                        escrow, "chain", summary, ledger=_usdc(balance), chain=_usdc(chain)
                    )


def _usdc(amount: Decimal) -> str:
    return Money(Decimal(amount).quantize(Decimal("0.0000001")), "USDC").text()


def escrow_finding(escrow: Escrow, *, kind: str, key: str, summary: str, **extra: str) -> Finding:
    """A problem about an escrow (and its order), for a reconciliation case."""
    return Finding(
        kind=kind,
        key=key,
        summary=summary,
        marketplace_id=escrow.marketplace_id,
        object_type="escrow",
        object_id=escrow.public_id,
        details={
            "order_id": escrow.order.public_id,
            "status": escrow.status,
            "contract_id": escrow.contract_id,
            **extra,
        },
    )


def _finding(escrow: Escrow, what: str, summary: str, **amounts: str) -> Finding:
    return escrow_finding(
        escrow,
        kind=ReconciliationCase.Kind.TRUSTLESS_WORK,
        key=f"tw:escrow:{escrow.public_id}:{what}",
        summary=summary,
        **amounts,
    )
