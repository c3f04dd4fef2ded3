"""Request bodies of the Trustless Work V1 build endpoints, read into chain Calls.

Shape errors are collected like NestJS's class-validator does (a list of messages, HTTP
400); business rules are left to tw_chain so they answer with the contract's own texts.
Amounts are JSON numbers in USDC units (a numeric string is tolerated, as the OpenAPI page
types fund-escrow's amount as a string) with at most 7 decimals; they become stroops.
"""

from decimal import Decimal, InvalidOperation
from typing import Any

from stellar_sdk import StrKey

from providers.sandbox.tw_chain import MULTI, ROLE_NAMES, SINGLE, STROOPS_PER_UNIT, Call, Escrow
from providers.sandbox.tw_chain import Milestone as ChainMilestone


class PayloadError(Exception):
    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class Fields:
    """Reads typed fields out of a JSON object, collecting every problem before raising."""

    def __init__(self, body: Any, prefix: str = "") -> None:
        self.errors: list[str] = []
        self.prefix = prefix
        self.body: dict[str, Any] = body if isinstance(body, dict) else {}
        if not isinstance(body, dict):
            self.errors.append(f"{prefix or 'body'} must be an object")

    def _missing(self, name: str) -> bool:
        if self.body.get(name) in (None, ""):
            self.errors.append(f"{self.prefix}{name} should not be empty")
            return True
        return False

    def text(self, name: str, *, required: bool = True) -> str:
        value = self.body.get(name)
        if value is None and not required:
            return ""
        if required and self._missing(name):
            return ""
        if not isinstance(value, str):
            self.errors.append(f"{self.prefix}{name} must be a string")
            return ""
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self.body.get(name) is None else self.text(name)

    def account(self, name: str) -> str:
        value = self.text(name)
        if value and not StrKey.is_valid_ed25519_public_key(value):
            self.errors.append(f"{self.prefix}{name} must be a valid Stellar account (G...)")
        return value

    def contract(self, name: str = "contractId") -> str:
        value = self.text(name)
        if value and not StrKey.is_valid_contract(value):
            self.errors.append(f"{self.prefix}{name} must be a valid contract address (C...)")
        return value

    def index(self, name: str = "milestoneIndex") -> int:
        value = self.body.get(name)
        if self._missing(name):
            return 0
        text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not text.isdigit():
            self.errors.append(f"{self.prefix}{name} must be a non-negative integer string")
            return 0
        return int(text)

    def stroops(self, name: str, *, required: bool = True) -> int:
        """A USDC amount (JSON number) as stroops; sign and zero are the contract's business."""
        value = self.body.get(name)
        if value is None and not required:
            return 0
        if self._missing(name):
            return 0
        return self._units(name, value, STROOPS_PER_UNIT)

    def bps(self, name: str) -> int:
        """A percentage (0.5 = 0.5 %) as basis points, exactly."""
        if self._missing(name):
            return 0
        return self._units(name, self.body.get(name), 100)

    def _units(self, name: str, value: Any, scale: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            self.errors.append(f"{self.prefix}{name} must be a number")
            return 0
        try:
            scaled = Decimal(value) * scale
        except InvalidOperation:
            self.errors.append(f"{self.prefix}{name} must be a number")
            return 0
        if not scaled.is_finite() or scaled != scaled.to_integral_value():
            places = len(str(scale)) - 1
            self.errors.append(f"{self.prefix}{name} must have at most {places} decimal places")
            return 0
        if abs(scaled) >= 2**100:  # far beyond any USDC supply; keeps i128 math safe
            self.errors.append(f"{self.prefix}{name} is too large")
            return 0
        return int(scaled)

    def integer(self, name: str, default: int = 0) -> int:
        value = self.body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.errors.append(f"{self.prefix}{name} must be an integer")
            return default
        return int(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.body.get(name, default)
        if not isinstance(value, bool):
            self.errors.append(f"{self.prefix}{name} must be a boolean")
            return default
        return value

    def objects(self, name: str) -> list["Fields"]:
        value = self.body.get(name)
        if not isinstance(value, list) or not value:
            self.errors.append(f"{self.prefix}{name} must be a non-empty array")
            return []
        return [Fields(item, f"{self.prefix}{name}.{i}.") for i, item in enumerate(value)]

    def child(self, name: str) -> "Fields":
        return Fields(self.body.get(name), f"{self.prefix}{name}.")

    def absorb(self, *others: "Fields") -> None:
        for other in others:
            self.errors.extend(other.errors)

    def done(self) -> None:
        if self.errors:
            raise PayloadError(self.errors)


def _roles(fields: Fields, kind: str) -> dict[str, str]:
    roles = fields.child("roles")
    names = [n for n in ROLE_NAMES if kind == SINGLE or n != "receiver"]
    found = {name: roles.account(name) for name in names}
    if kind == MULTI and roles.body.get("receiver"):
        found["receiver"] = roles.account("receiver")
    fields.absorb(roles)
    return found


def _milestones(fields: Fields, kind: str, *, with_state: bool) -> list[ChainMilestone]:
    milestones = []
    for item in fields.objects("milestones"):
        milestone = ChainMilestone(description=item.text("description"))
        if kind == MULTI:
            milestone.amount = item.stroops("amount")
            milestone.receiver = item.account("receiver") if item.body.get("receiver") else ""
        if with_state:
            milestone.status = item.text("status", required=False)
            milestone.evidence = item.text("evidence", required=False)
            flags = item.child("flags") if isinstance(item.body.get("flags"), dict) else item
            milestone.approved = flags.boolean("approved")
            if kind == MULTI and flags is not item:
                milestone.disputed = flags.boolean("disputed")
                milestone.released = flags.boolean("released")
                milestone.resolved = flags.boolean("resolved")
            if flags is not item:
                item.absorb(flags)
        fields.absorb(item)
        milestones.append(milestone)
    return milestones


def _properties(fields: Fields, kind: str, *, signer: str, with_state: bool) -> Escrow:
    roles = _roles(fields, kind)
    milestones = _milestones(fields, kind, with_state=with_state)
    trustline = fields.child("trustline")
    escrow = Escrow(
        contract_id="",
        kind=kind,
        signer=signer,
        engagement_id=fields.text("engagementId"),
        title=fields.text("title"),
        description=fields.text("description"),
        roles=roles,
        amount=fields.stroops("amount") if kind == SINGLE else sum(m.amount for m in milestones),
        platform_fee_bps=fields.bps("platformFee"),
        milestones=milestones,
        trustline_address=trustline.text("address"),
        trustline_name=str(trustline.body.get("symbol") or trustline.body.get("name") or "USDC"),
        receiver_memo=fields.integer("receiverMemo"),
    )
    fields.absorb(trustline)
    if kind == MULTI and not roles.get("receiver") and any(not m.receiver for m in milestones):
        fields.errors.append("each milestone needs a receiver when roles.receiver is not set")
    if with_state:
        flags = fields.child("flags")
        escrow.disputed = flags.boolean("disputed")
        escrow.released = flags.boolean("released")
        escrow.resolved = flags.boolean("resolved")
        escrow.is_active = fields.boolean("isActive", default=True)
        fields.absorb(flags)
    return escrow


def deploy(body: Any, kind: str) -> Call:
    fields = Fields(body)
    signer = fields.account("signer")
    escrow = _properties(fields, kind, signer=signer, with_state=False)
    fields.done()
    return Call(op="deploy", contract_id="", kind=kind, signer=signer, escrow=escrow)


def update(body: Any, kind: str) -> Call:
    fields = Fields(body)
    contract_id, signer = fields.contract(), fields.account("signer")
    inner = fields.child("escrow")
    escrow = _properties(inner, kind, signer=signer, with_state=True)
    fields.absorb(inner)
    fields.done()
    escrow.contract_id = contract_id
    return Call(
        op="update_escrow", contract_id=contract_id, kind=kind, signer=signer, escrow=escrow
    )


def fund(body: Any, kind: str) -> Call:
    fields = Fields(body)
    contract_id, signer = fields.contract(), fields.account("signer")
    amount = fields.stroops("amount")
    fields.done()
    return Call(op="fund_escrow", contract_id=contract_id, kind=kind, signer=signer, amount=amount)


def change_status(body: Any, kind: str) -> Call:
    fields = Fields(body)
    call = Call(
        op="change_milestone_status",
        contract_id=fields.contract(),
        kind=kind,
        signer=fields.account("serviceProvider"),
        index=fields.index(),
        status=fields.text("newStatus"),
        evidence=fields.optional_text("newEvidence"),
    )
    fields.done()
    return call


def approve(body: Any, kind: str) -> Call:
    fields = Fields(body)
    call = Call(
        op="approve_milestone",
        contract_id=fields.contract(),
        kind=kind,
        signer=fields.account("approver"),
        index=fields.index(),
    )
    fields.done()
    return call


def release(body: Any, kind: str) -> Call:
    fields = Fields(body)
    contract_id, signer = fields.contract(), fields.account("releaseSigner")
    index = fields.index() if kind == MULTI else 0
    fields.done()
    op = "release_milestone_funds" if kind == MULTI else "release_funds"
    return Call(op=op, contract_id=contract_id, kind=kind, signer=signer, index=index)


def dispute(body: Any, kind: str) -> Call:
    fields = Fields(body)
    contract_id, signer = fields.contract(), fields.account("signer")
    index = fields.index() if kind == MULTI else 0
    fields.done()
    op = "dispute_milestone" if kind == MULTI else "dispute_escrow"
    return Call(op=op, contract_id=contract_id, kind=kind, signer=signer, index=index)


def resolve(body: Any, kind: str, *, op: str) -> Call:
    """resolve_dispute, resolve_milestone_dispute or withdraw_remaining_funds."""
    fields = Fields(body)
    contract_id, signer = fields.contract(), fields.account("disputeResolver")
    index = fields.index() if op == "resolve_milestone_dispute" else 0
    distributions = []
    for item in fields.objects("distributions"):
        distributions.append((item.account("address"), item.stroops("amount")))
        fields.absorb(item)
    if len({address for address, _ in distributions}) != len(distributions):
        fields.errors.append("distributions must not repeat an address")
    fields.done()
    return Call(
        op=op,
        contract_id=contract_id,
        kind=kind,
        signer=signer,
        index=index,
        distributions=tuple(distributions),
    )
