"""Typed requests and answers of the Trustless Work V1 API, and their JSON shapes.

Amounts are Decimal in USDC units and go on the wire as JSON numbers with exactly the
digits they need (providers.json_numbers); more than 7 decimals is refused before sending,
floats are refused always. The platform fee is a percentage (Decimal("2.5") = 2.5 %).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

SINGLE = "single-release"
MULTI = "multi-release"
USDC_PLACES = 7


def usdc(value: Decimal, what: str = "amount") -> Decimal:
    """Check an amount for the wire: a finite Decimal with at most 7 decimals.

    Raises:
        TypeError: not a Decimal (floats above all).
        ValueError: not finite, or more precise than USDC on Stellar.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value != value.quantize(Decimal(1).scaleb(-USDC_PLACES)):
        raise ValueError(f"{what} {value} is not a USDC amount (at most 7 decimals).")
    return value.normalize()


def percent(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"platform_fee must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise ValueError(f"platform_fee {value} must be a percentage with at most 2 decimals.")
    return value.normalize()


@dataclass(frozen=True, kw_only=True)
class Roles:
    approver: str
    service_provider: str
    platform_address: str
    release_signer: str
    dispute_resolver: str
    receiver: str = ""  # multi-release escrows may name receivers per milestone instead

    def as_json(self) -> dict[str, str]:
        body = {
            "approver": self.approver,
            "serviceProvider": self.service_provider,
            "platformAddress": self.platform_address,
            "releaseSigner": self.release_signer,
            "disputeResolver": self.dispute_resolver,
        }
        if self.receiver:
            body["receiver"] = self.receiver
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "Roles":
        return cls(
            approver=str(body.get("approver", "")),
            service_provider=str(body.get("serviceProvider", "")),
            platform_address=str(body.get("platformAddress", "")),
            release_signer=str(body.get("releaseSigner", "")),
            dispute_resolver=str(body.get("disputeResolver", "")),
            receiver=str(body.get("receiver", "") or ""),
        )


@dataclass(frozen=True, kw_only=True)
class MilestoneSpec:
    description: str
    amount: Decimal | None = None  # multi-release only
    receiver: str = ""  # multi-release only


@dataclass(frozen=True, kw_only=True)
class DeployRequest:
    """A new escrow. `amount` for single-release; per-milestone amounts for multi-release."""

    engagement_id: str  # our reference (the order id): how an uncertain deploy is found
    title: str
    description: str
    roles: Roles
    platform_fee: Decimal
    milestones: Sequence[MilestoneSpec]
    trustline_address: str  # the USDC issuer (G...)
    trustline_symbol: str = "USDC"
    amount: Decimal | None = None
    receiver_memo: int | None = None

    def as_json(self, *, signer: str, kind: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "signer": signer,
            "engagementId": self.engagement_id,
            "title": self.title,
            "description": self.description,
            "roles": self.roles.as_json(),
            "platformFee": percent(self.platform_fee),
            "milestones": [_milestone_json(m, kind) for m in self.milestones],
            "trustline": {"address": self.trustline_address, "symbol": self.trustline_symbol},
        }
        if kind == SINGLE:
            if self.amount is None:
                raise ValueError("A single-release escrow needs an amount.")
            body["amount"] = usdc(self.amount)
        if self.receiver_memo is not None:
            body["receiverMemo"] = self.receiver_memo
        return body


def _milestone_json(milestone: MilestoneSpec, kind: str) -> dict[str, Any]:
    body: dict[str, Any] = {"description": milestone.description}
    if kind == MULTI:
        if milestone.amount is None:
            raise ValueError("Each multi-release milestone needs an amount.")
        body["amount"] = usdc(milestone.amount, "milestone amount")
        if milestone.receiver:
            body["receiver"] = milestone.receiver
    return body


@dataclass(frozen=True, kw_only=True)
class Distribution:
    address: str
    amount: Decimal

    def as_json(self) -> dict[str, Any]:
        return {"address": self.address, "amount": usdc(self.amount, "distribution amount")}


@dataclass(frozen=True, kw_only=True)
class EscrowMilestone:
    description: str
    status: str
    evidence: str
    approved: bool
    amount: Decimal | None = None  # multi-release
    receiver: str = ""  # multi-release
    disputed: bool = False
    released: bool = False
    resolved: bool = False


@dataclass(frozen=True, kw_only=True)
class Escrow:
    """An escrow as the read helpers return it (reference/providers.md §1.6)."""

    contract_id: str
    type: str
    signer: str
    engagement_id: str
    title: str
    description: str
    roles: Roles
    amount: Decimal | None  # single-release; multi-release: see `total`
    platform_fee: Decimal
    balance: Decimal
    milestones: tuple[EscrowMilestone, ...]
    disputed: bool
    released: bool
    resolved: bool
    trustline_address: str
    is_active: bool
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def total(self) -> Decimal:
        """What the escrow must hold to pay everything out."""
        if self.amount is not None:
            return self.amount
        return sum((m.amount or Decimal(0) for m in self.milestones), Decimal(0))

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "Escrow":
        flags = body.get("flags") or {}
        amount = body.get("amount")
        return cls(
            contract_id=str(body.get("contractId", "")),
            type=str(body.get("type", SINGLE)),
            signer=str(body.get("signer", "")),
            engagement_id=str(body.get("engagementId", "")),
            title=str(body.get("title", "")),
            description=str(body.get("description", "")),
            roles=Roles.from_json(body.get("roles") or {}),
            amount=None if amount is None else _decimal(amount),
            platform_fee=_decimal(body.get("platformFee", 0)),
            balance=_decimal(body.get("balance", 0)),
            milestones=tuple(_milestone(m) for m in body.get("milestones") or []),
            disputed=bool(flags.get("disputed", False)),
            released=bool(flags.get("released", False)),
            resolved=bool(flags.get("resolved", False)),
            trustline_address=str((body.get("trustline") or {}).get("address", "")),
            is_active=bool(body.get("isActive", True)),
            raw=dict(body),
        )


def _milestone(body: Mapping[str, Any]) -> EscrowMilestone:
    flags = body.get("flags") or {}
    amount = body.get("amount")
    return EscrowMilestone(
        description=str(body.get("description", "")),
        status=str(body.get("status", "") or ""),
        evidence=str(body.get("evidence", "") or ""),
        approved=bool(flags.get("approved", body.get("approved", False))),
        amount=None if amount is None else _decimal(amount),
        receiver=str(body.get("receiver", "") or ""),
        disputed=bool(flags.get("disputed", False)),
        released=bool(flags.get("released", False)),
        resolved=bool(flags.get("resolved", False)),
    )


def _decimal(value: Any) -> Decimal:
    """A JSON number (read as int or Decimal) or numeric string; never via float."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ValueError(f"Expected a number, got {type(value).__name__}.")
    return Decimal(value)


@dataclass(frozen=True, kw_only=True)
class TxResult:
    """A write that is on chain. `tx_hash` is empty when nothing had to be sent."""

    operation: str
    contract_id: str
    tx_hash: str
    message: str = ""
    escrow: Escrow | None = None  # deploy (and update) answers carry the escrow
    confirmed_by_lookup: bool = False  # the answer was lost; a read proved it landed
    already_done: bool = False  # the chain already showed the effect; nothing was sent


@dataclass(frozen=True, kw_only=True)
class Balance:
    address: str
    balance: Decimal
