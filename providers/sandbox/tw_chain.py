"""The simulated chain behind the Trustless Work simulator: accounts, escrow contracts, rules.

Amounts are integer stroops (1 USDC = 10,000,000). The rules and error texts follow the
Trustless Work escrow contracts (reference/providers.md §1.3, §1.4, §1.7):

- Fees are taken at release or resolution, never funded on top: the Trustless Work fee is
  30 bps and the platform fee `platform_fee_bps`, each `amount * bps // 10000` (integer
  division, as the contract's safe_mul_div); the receiver gets the rest.
- A dispute resolution takes the same fees on the distributed total, then charges each
  distribution its share `amount * fees // total`. Shares round down, so nets round up:
  when they do not divide exactly the payouts exceed the total by a few stroops and, as
  on chain, the last token transfer fails the whole call (InsufficientContractBalance).
- `check(chain, call)` raises ContractError exactly when `apply(chain, call)` would fail, so
  the simulator can refuse at build time (as the real API simulates) and again at submit.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

STROOPS_PER_UNIT = 10_000_000
TW_FEE_BPS = 30
BPS = 10_000
MAX_PLATFORM_FEE_BPS = 9_900
MAX_SINGLE_RELEASE_MILESTONES = 10
MAX_DISTRIBUTIONS = 50
ROLE_NAMES = (
    "approver",
    "serviceProvider",
    "platformAddress",
    "releaseSigner",
    "disputeResolver",
    "receiver",
)
SINGLE = "single-release"
MULTI = "multi-release"

# name -> (message, machine code). Messages are the contracts' own texts.
ERRORS: dict[str, tuple[str, str]] = {
    "AmountCannotBeZero": (
        "Amount cannot be equal to or less than zero",
        "ESCROW_AMOUNT_CANNOT_BE_ZERO",
    ),
    "EscrowAlreadyInitialized": ("Escrow already initialized", "ESCROW_ALREADY_INITIALIZED"),
    "EscrowNotFound": ("Escrow not found", "ESCROW_NOT_FOUND"),
    "OnlyReleaseSignerCanReleaseEarnings": (
        "Only the release signer can release the escrow earnings",
        "ESCROW_ONLY_RELEASE_SIGNER",
    ),
    "EscrowNotCompleted": (
        "The escrow must be completed to release earnings",
        "ESCROW_NOT_COMPLETED",
    ),
    "EscrowBalanceNotEnoughToSendEarnings": (
        "The escrow balance must be equal to the amount of earnings defined for the escrow",
        "ESCROW_BALANCE_NOT_ENOUGH",
    ),
    "OnlyPlatformAddressExecuteThisFunction": (
        "Only the platform address should be able to execute this function",
        "ESCROW_ONLY_PLATFORM",
    ),
    "OnlyServiceProviderChangeMilstoneStatus": (
        "Only the service provider can change milestone status",
        "ESCROW_ONLY_SERVICE_PROVIDER",
    ),
    "NoMileStoneDefined": ("Escrow initialized without milestone", "ESCROW_NO_MILESTONES"),
    "InvalidMileStoneIndex": ("Invalid milestone index", "ESCROW_INVALID_MILESTONE_INDEX"),
    "OnlyApproverChangeMilstoneFlag": (
        "Only the approver can change milestone flag",
        "ESCROW_ONLY_APPROVER",
    ),
    "OnlyDisputeResolverCanExecuteThisFunction": (
        "Only the dispute resolver can execute this function",
        "ESCROW_ONLY_DISPUTE_RESOLVER",
    ),
    "EscrowAlreadyInDispute": ("Escrow already in dispute", "ESCROW_ALREADY_IN_DISPUTE"),
    "EscrowNotInDispute": ("Escrow not in dispute", "ESCROW_NOT_IN_DISPUTE"),
    "InsufficientFundsForResolution": (
        "Insufficient funds for resolution",
        "ESCROW_INSUFFICIENT_FUNDS_FOR_RESOLUTION",
    ),
    "EscrowOpenedForDisputeResolution": (
        "Escrow has been opened for dispute resolution",
        "ESCROW_OPENED_FOR_DISPUTE",
    ),
    "MilestoneApprovedCantChangeEscrowProperties": (
        "You can't change the escrow properties after the milestone is approved",
        "ESCROW_MILESTONE_APPROVED_CANT_CHANGE",
    ),
    "EscrowHasFunds": ("Escrow has funds", "ESCROW_HAS_FUNDS"),
    "EscrowAlreadyResolved": ("This escrow is already resolved", "ESCROW_ALREADY_RESOLVED"),
    "TooManyEscrowsRequested": (
        "You have requested too many escrows",
        "ESCROW_TOO_MANY_REQUESTED",
    ),
    "UnauthorizedToChangeDisputeFlag": (
        "You are not authorized to change the dispute flag",
        "ESCROW_UNAUTHORIZED_TO_DISPUTE",
    ),
    "TooManyMilestones": (
        "Cannot define more than 10 milestones in an escrow",
        "ESCROW_TOO_MANY_MILESTONES",
    ),
    "MilestoneHasAlreadyBeenApproved": (
        "You cannot approve a milestone that has already been approved previously",
        "ESCROW_MILESTONE_ALREADY_APPROVED",
    ),
    "EmptyMilestoneStatus": (
        "The milestone status cannot be empty",
        "ESCROW_EMPTY_MILESTONE_STATUS",
    ),
    "PlatformFeeTooHigh": ("The platform fee cannot exceed 99%", "ESCROW_PLATFORM_FEE_TOO_HIGH"),
    "FlagsMustBeFalse": (
        "All flags (approved, disputed, released) must be false in order to execute this function.",
        "ESCROW_FLAGS_MUST_BE_FALSE",
    ),
    "EscrowPropertiesMismatch": (
        "The provided escrow properties do not match the stored escrow.",
        "ESCROW_PROPERTIES_MISMATCH",
    ),
    "EscrowAlreadyReleased": ("The escrow funds have been released.", "ESCROW_ALREADY_RELEASED"),
    "PlatformAddressCannotBeChanged": (
        "The platform address of the escrow cannot be changed.",
        "ESCROW_PLATFORM_ADDRESS_CANNOT_CHANGE",
    ),
    "AmountsToBeTransferredShouldBePositive": (
        "None of the amounts to be transferred should be less or equal than 0.",
        "ESCROW_AMOUNTS_MUST_BE_POSITIVE",
    ),
    "DistributionsMustEqualEscrowBalance": (
        "The sum of distributions must equal the current escrow balance when resolving an "
        "escrow dispute.",
        "ESCROW_DISTRIBUTIONS_MUST_EQUAL_BALANCE",
    ),
    "DisputeResolverCannotDisputeTheEscrow": (
        "The dispute resolver cannot dispute the escrow.",
        "ESCROW_RESOLVER_CANNOT_DISPUTE",
    ),
    "TotalAmountCannotBeZero": (
        "The total amount to be distributed cannot be equal to zero.",
        "ESCROW_TOTAL_AMOUNT_CANNOT_BE_ZERO",
    ),
    "InsufficientFundsForEscrowFunding": (
        "The signer has insufficient funds to fund the escrow.",
        "ESCROW_INSUFFICIENT_FUNDS_FOR_FUNDING",
    ),
    "EscrowNotFullyProcessed": (
        "The escrow must be fully processed before withdrawing remaining funds",
        "ESCROW_NOT_FULLY_PROCESSED",
    ),
    "TooManyDistributions": (
        "Cannot define more than 50 distributions when resolving dispute",
        "ESCROW_TOO_MANY_DISTRIBUTIONS",
    ),
    # Multi-release, per milestone.
    "MilestoneNotCompleted": (
        "The milestone must be completed to release funds",
        "ESCROW_MILESTONE_NOT_COMPLETED",
    ),
    "MilestoneAlreadyInDispute": ("Milestone already in dispute", "ESCROW_MILESTONE_IN_DISPUTE"),
    "MilestoneNotInDispute": ("Milestone not in dispute", "ESCROW_MILESTONE_NOT_IN_DISPUTE"),
    "MilestoneAlreadyReleased": (
        "This milestone is already released",
        "ESCROW_MILESTONE_ALREADY_RELEASED",
    ),
    "MilestoneAlreadyResolved": (
        "This milestone is already resolved",
        "ESCROW_MILESTONE_ALREADY_RESOLVED",
    ),
    "CantReleaseAMilestoneInDispute": (
        "You cannot launch a milestone in dispute",
        "ESCROW_MILESTONE_DISPUTED_CANT_RELEASE",
    ),
    "TotalDisputeFundsMustNotExceedTheMilestoneAmount": (
        "The total dispute funds must not exceed the milestone amount",
        "ESCROW_DISPUTE_FUNDS_EXCEED_MILESTONE",
    ),
    # Ledger-level failures (the token contract or the account), not escrow rules.
    "InsufficientContractBalance": (
        "The escrow contract's balance is not sufficient for the transfers of this call",
        "STELLAR_INSUFFICIENT_BALANCE",
    ),
    "AccountNotFound": ("The account does not exist on the network", "STELLAR_ACCOUNT_NOT_FOUND"),
    "TrustlineMissing": (
        "The receiving account has no trustline for the escrow asset",
        "STELLAR_TRUSTLINE_MISSING",
    ),
}


class ContractError(Exception):
    """The contract (or the token transfer it makes) refuses the call."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        self.message, self.code = ERRORS[name]
        if detail:
            self.message = f"{self.message}: {detail}"
        super().__init__(self.message)


def to_units(stroops: int) -> Decimal:
    """Stroops as a human amount, exactly: 12500000 -> Decimal('1.25')."""
    return (Decimal(stroops) / STROOPS_PER_UNIT).normalize()


@dataclass
class Account:
    address: str
    sequence: int
    usdc: int = 0
    trustline: bool = True


@dataclass
class Milestone:
    description: str
    status: str = ""
    evidence: str = ""
    approved: bool = False
    amount: int = 0  # multi-release only
    receiver: str = ""  # multi-release only; empty: roles["receiver"]
    disputed: bool = False  # multi-release flags
    released: bool = False
    resolved: bool = False


@dataclass
class Escrow:
    contract_id: str
    kind: str  # SINGLE or MULTI
    signer: str  # the deployer
    engagement_id: str
    title: str
    description: str
    roles: dict[str, str]
    amount: int  # single-release; for multi-release the sum of the milestones
    platform_fee_bps: int
    milestones: list[Milestone]
    trustline_address: str  # as the deploy request gave it (the issuer)
    trustline_name: str
    receiver_memo: int = 0
    disputed: bool = False
    released: bool = False
    resolved: bool = False
    balance: int = 0
    is_active: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0

    def properties(self) -> tuple[Any, ...]:
        """What `fund_escrow`'s expected_escrow is compared with: the on-chain struct."""
        return (
            self.engagement_id,
            self.title,
            self.description,
            tuple(sorted(self.roles.items())),
            self.amount,
            self.platform_fee_bps,
            tuple(_milestone_properties(m) for m in self.milestones),
            (self.disputed, self.released, self.resolved),
            self.trustline_address,
            self.receiver_memo,
        )

    def receiver_of(self, milestone: Milestone | None = None) -> str:
        if milestone is not None and milestone.receiver:
            return milestone.receiver
        return self.roles["receiver"]


def _milestone_properties(m: Milestone) -> tuple[Any, ...]:
    flags = (m.approved, m.disputed, m.released, m.resolved)
    return (m.description, m.status, m.evidence, m.amount, m.receiver, flags)


@dataclass(frozen=True)
class Call:
    """One contract invocation, as built and later submitted."""

    op: str  # deploy, fund_escrow, change_milestone_status, approve_milestone, ...
    contract_id: str
    kind: str  # SINGLE or MULTI
    signer: str  # who must sign: the transaction's source account
    index: int = 0
    amount: int = 0
    status: str = ""
    evidence: str | None = None
    distributions: tuple[tuple[str, int], ...] = ()
    escrow: Escrow | None = None  # deploy and update_escrow: the new properties
    expected: tuple[Any, ...] = ()  # fund_escrow: the properties it was built against


@dataclass
class Chain:
    accounts: dict[str, Account] = field(default_factory=dict)
    escrows: dict[str, Escrow] = field(default_factory=dict)
    tw_fee_address: str = ""

    def escrow(self, call: Call) -> Escrow:
        found = self.escrows.get(call.contract_id)
        if found is None:
            raise ContractError("EscrowNotFound")
        return found

    def account(self, address: str) -> Account:
        found = self.accounts.get(address)
        if found is None:
            raise ContractError("AccountNotFound", address)
        return found

    def can_receive(self, address: str) -> None:
        account = self.accounts.get(address)
        if account is None:
            raise ContractError("AccountNotFound", address)
        if not account.trustline:
            raise ContractError("TrustlineMissing", address)

    def pay_out(self, escrow: Escrow, payouts: list[tuple[str, int]]) -> None:
        for address, stroops in payouts:
            if stroops > 0:
                escrow.balance -= stroops
                self.accounts[address].usdc += stroops


def standard_fees(amount: int, platform_fee_bps: int) -> tuple[int, int, int]:
    """(Trustless Work fee, platform fee, receiver amount) for a release of `amount`."""
    tw_fee = amount * TW_FEE_BPS // BPS
    platform_fee = amount * platform_fee_bps // BPS
    return tw_fee, platform_fee, amount - tw_fee - platform_fee


def release_payouts(chain: Chain, escrow: Escrow, amount: int, receiver: str) -> list[Any]:
    tw_fee, platform_fee, rest = standard_fees(amount, escrow.platform_fee_bps)
    return [
        (chain.tw_fee_address, tw_fee),
        (escrow.roles["platformAddress"], platform_fee),
        (receiver, rest),
    ]


def distribution_payouts(chain: Chain, escrow: Escrow, call: Call) -> list[tuple[str, int]]:
    """Fees on the total, then each distribution net of its pro-rata share of the fees."""
    total = sum(amount for _, amount in call.distributions)
    tw_fee, platform_fee, _ = standard_fees(total, escrow.platform_fee_bps)
    fees = tw_fee + platform_fee
    payouts = [(chain.tw_fee_address, tw_fee), (escrow.roles["platformAddress"], platform_fee)]
    payouts += [
        (address, amount - amount * fees // total) for address, amount in call.distributions
    ]
    return payouts


def _check_payouts(chain: Chain, call: Call, payouts: list[tuple[str, int]]) -> None:
    # Each distribution's fee share is rounded down, so the payouts of a resolution can
    # exceed the balance by a few stroops; the token transfer then fails the whole call.
    escrow = chain.escrows.get(call.contract_id)
    if escrow is not None and sum(stroops for _, stroops in payouts) > escrow.balance:
        raise ContractError("InsufficientContractBalance")
    for address, stroops in payouts:
        if stroops > 0:
            chain.can_receive(address)


def _milestone(escrow: Escrow, index: int) -> Milestone:
    if not escrow.milestones:
        raise ContractError("NoMileStoneDefined")
    if not 0 <= index < len(escrow.milestones):
        raise ContractError("InvalidMileStoneIndex")
    return escrow.milestones[index]


def _check_distributions(call: Call) -> int:
    if len(call.distributions) > MAX_DISTRIBUTIONS:
        raise ContractError("TooManyDistributions")
    if any(amount <= 0 for _, amount in call.distributions):
        raise ContractError("AmountsToBeTransferredShouldBePositive")
    total = sum(amount for _, amount in call.distributions)
    if total <= 0:
        raise ContractError("TotalAmountCannotBeZero")
    return total


# --- Rules: each raises ContractError or returns the payouts the call will make ----------------


def _deploy(chain: Chain, call: Call) -> list[tuple[str, int]]:
    proposal = call.escrow
    if proposal is None:
        raise ValueError("deploy needs the escrow properties")
    if proposal.contract_id in chain.escrows:
        raise ContractError("EscrowAlreadyInitialized")
    chain.account(call.signer)
    _check_properties(proposal)
    receivers = {proposal.receiver_of(m) for m in proposal.milestones}
    for address in sorted(receivers | {proposal.roles["platformAddress"]}):
        chain.can_receive(address)
    return []


def _fund(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.amount <= 0:
        raise ContractError("AmountCannotBeZero")
    if escrow.released:
        raise ContractError("EscrowAlreadyReleased")
    if escrow.resolved:
        raise ContractError("EscrowAlreadyResolved")
    if call.expected != escrow.properties():
        raise ContractError("EscrowPropertiesMismatch")
    funder = chain.account(call.signer)
    if not funder.trustline or funder.usdc < call.amount:
        raise ContractError("InsufficientFundsForEscrowFunding")
    return []


def _change_status(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.signer != escrow.roles["serviceProvider"]:
        raise ContractError("OnlyServiceProviderChangeMilstoneStatus")
    milestone = _milestone(escrow, call.index)
    if not call.status:
        raise ContractError("EmptyMilestoneStatus")
    if milestone.released:
        raise ContractError("MilestoneAlreadyReleased")
    return []


def _approve(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.signer != escrow.roles["approver"]:
        raise ContractError("OnlyApproverChangeMilstoneFlag")
    milestone = _milestone(escrow, call.index)
    if milestone.approved:
        raise ContractError("MilestoneHasAlreadyBeenApproved")
    if not milestone.status:
        raise ContractError("EmptyMilestoneStatus")
    return []


def _release(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if escrow.released:
        raise ContractError("EscrowAlreadyReleased")
    if escrow.resolved:
        raise ContractError("EscrowAlreadyResolved")
    if call.signer != escrow.roles["releaseSigner"]:
        raise ContractError("OnlyReleaseSignerCanReleaseEarnings")
    if not escrow.milestones:
        raise ContractError("NoMileStoneDefined")
    if not all(m.approved for m in escrow.milestones):
        raise ContractError("EscrowNotCompleted")
    if escrow.disputed:
        raise ContractError("EscrowOpenedForDisputeResolution")
    if escrow.balance < escrow.amount:
        raise ContractError("EscrowBalanceNotEnoughToSendEarnings")
    return release_payouts(chain, escrow, escrow.amount, escrow.receiver_of())


def _dispute(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if escrow.released:
        raise ContractError("EscrowAlreadyReleased")
    if escrow.resolved:
        raise ContractError("EscrowAlreadyResolved")
    if escrow.disputed:
        raise ContractError("EscrowAlreadyInDispute")
    _check_disputer(escrow, call.signer, None)
    return []


def _check_disputer(escrow: Escrow, signer: str, milestone: Milestone | None) -> None:
    if signer == escrow.roles["disputeResolver"]:
        raise ContractError("DisputeResolverCannotDisputeTheEscrow")
    holders = set(escrow.roles.values()) | ({milestone.receiver} if milestone else set())
    if signer not in holders - {""}:
        raise ContractError("UnauthorizedToChangeDisputeFlag")


def _resolve(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.signer != escrow.roles["disputeResolver"]:
        raise ContractError("OnlyDisputeResolverCanExecuteThisFunction")
    if escrow.resolved:
        raise ContractError("EscrowAlreadyResolved")
    if not escrow.disputed:
        raise ContractError("EscrowNotInDispute")
    total = _check_distributions(call)
    if total != escrow.balance:
        raise ContractError("DistributionsMustEqualEscrowBalance")
    return distribution_payouts(chain, escrow, call)


def _release_milestone(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.signer != escrow.roles["releaseSigner"]:
        raise ContractError("OnlyReleaseSignerCanReleaseEarnings")
    milestone = _milestone(escrow, call.index)
    if milestone.released:
        raise ContractError("MilestoneAlreadyReleased")
    if milestone.resolved:
        raise ContractError("MilestoneAlreadyResolved")
    if milestone.disputed:
        raise ContractError("CantReleaseAMilestoneInDispute")
    if not milestone.approved:
        raise ContractError("MilestoneNotCompleted")
    if escrow.balance < milestone.amount:
        raise ContractError("EscrowBalanceNotEnoughToSendEarnings")
    return release_payouts(chain, escrow, milestone.amount, escrow.receiver_of(milestone))


def _dispute_milestone(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    milestone = _milestone(escrow, call.index)
    if milestone.released:
        raise ContractError("MilestoneAlreadyReleased")
    if milestone.resolved:
        raise ContractError("MilestoneAlreadyResolved")
    if milestone.disputed:
        raise ContractError("MilestoneAlreadyInDispute")
    _check_disputer(escrow, call.signer, milestone)
    return []


def _resolve_milestone(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.signer != escrow.roles["disputeResolver"]:
        raise ContractError("OnlyDisputeResolverCanExecuteThisFunction")
    milestone = _milestone(escrow, call.index)
    if milestone.released:
        raise ContractError("MilestoneAlreadyReleased")
    if milestone.resolved:
        raise ContractError("MilestoneAlreadyResolved")
    if not milestone.disputed:
        raise ContractError("MilestoneNotInDispute")
    total = _check_distributions(call)
    if total > milestone.amount:
        raise ContractError("TotalDisputeFundsMustNotExceedTheMilestoneAmount")
    if escrow.balance < total:
        raise ContractError("InsufficientFundsForResolution")
    return distribution_payouts(chain, escrow, call)


def _withdraw_remaining(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    if call.signer != escrow.roles["disputeResolver"]:
        raise ContractError("OnlyDisputeResolverCanExecuteThisFunction")
    if not all(m.released or m.resolved for m in escrow.milestones):
        raise ContractError("EscrowNotFullyProcessed")
    total = _check_distributions(call)
    if total > escrow.balance:
        raise ContractError("InsufficientFundsForResolution")
    return distribution_payouts(chain, escrow, call)


def _check_properties(proposal: Escrow) -> None:
    """What initialize_escrow and update_escrow both require of the new properties."""
    if not proposal.milestones:
        raise ContractError("NoMileStoneDefined")
    if proposal.kind == SINGLE and len(proposal.milestones) > MAX_SINGLE_RELEASE_MILESTONES:
        raise ContractError("TooManyMilestones")
    single = proposal.kind == SINGLE
    amounts = [proposal.amount] if single else [m.amount for m in proposal.milestones]
    if any(amount <= 0 for amount in amounts):
        raise ContractError("AmountCannotBeZero")
    if proposal.platform_fee_bps > MAX_PLATFORM_FEE_BPS:
        raise ContractError("PlatformFeeTooHigh")


def _update(chain: Chain, call: Call) -> list[tuple[str, int]]:
    escrow = chain.escrow(call)
    proposal = call.escrow
    if proposal is None:
        raise ValueError("update_escrow needs the escrow properties")
    if call.signer != escrow.roles["platformAddress"]:
        raise ContractError("OnlyPlatformAddressExecuteThisFunction")
    if any(m.approved for m in escrow.milestones):
        raise ContractError("MilestoneApprovedCantChangeEscrowProperties")
    if escrow.balance > 0:
        raise ContractError("EscrowHasFunds")
    if escrow.disputed:
        raise ContractError("EscrowOpenedForDisputeResolution")
    if proposal.roles["platformAddress"] != escrow.roles["platformAddress"]:
        raise ContractError("PlatformAddressCannotBeChanged")
    flags = [proposal.disputed, proposal.released, proposal.resolved]
    flags += [m.approved or m.disputed or m.released or m.resolved for m in proposal.milestones]
    if any(flags):
        raise ContractError("FlagsMustBeFalse")
    _check_properties(proposal)
    return []


Rule = Callable[[Chain, Call], list[tuple[str, int]]]
RULES: dict[str, Rule] = {
    "deploy": _deploy,
    "fund_escrow": _fund,
    "change_milestone_status": _change_status,
    "approve_milestone": _approve,
    "release_funds": _release,
    "dispute_escrow": _dispute,
    "resolve_dispute": _resolve,
    "update_escrow": _update,
    "release_milestone_funds": _release_milestone,
    "dispute_milestone": _dispute_milestone,
    "resolve_milestone_dispute": _resolve_milestone,
    "withdraw_remaining_funds": _withdraw_remaining,
}


def check(chain: Chain, call: Call) -> list[tuple[str, int]]:
    """Raise ContractError if `call` would fail now; else return the payouts it would make."""
    payouts = RULES[call.op](chain, call)
    _check_payouts(chain, call, payouts)
    return payouts


def apply(chain: Chain, call: Call, *, now: float) -> Escrow:
    """Check, then carry out `call`; return the escrow as it now stands."""
    payouts = check(chain, call)
    if call.op == "deploy":
        if call.escrow is None:
            raise ValueError("deploy needs the escrow properties")
        escrow = copy.deepcopy(call.escrow)
        escrow.created_at = now
        chain.escrows[escrow.contract_id] = escrow
    else:
        escrow = chain.escrows[call.contract_id]
        _EFFECTS[call.op](chain, escrow, call)
        chain.pay_out(escrow, payouts)
    escrow.updated_at = now
    return escrow


def _fund_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    chain.accounts[call.signer].usdc -= call.amount
    escrow.balance += call.amount


def _status_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    milestone = escrow.milestones[call.index]
    milestone.status = call.status
    if call.evidence is not None:
        milestone.evidence = call.evidence


def _approve_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    escrow.milestones[call.index].approved = True


def _release_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    escrow.released = True


def _dispute_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    escrow.disputed = True


def _resolve_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    escrow.resolved, escrow.disputed = True, False


def _update_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    proposal = copy.deepcopy(call.escrow)
    if proposal is None:
        raise ValueError("update_escrow needs the escrow properties")
    for name in ("engagement_id", "title", "description", "roles", "amount", "milestones"):
        setattr(escrow, name, getattr(proposal, name))
    escrow.platform_fee_bps = proposal.platform_fee_bps
    escrow.receiver_memo = proposal.receiver_memo
    escrow.is_active = proposal.is_active


def _release_milestone_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    escrow.milestones[call.index].released = True


def _dispute_milestone_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    escrow.milestones[call.index].disputed = True


def _resolve_milestone_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    milestone = escrow.milestones[call.index]
    milestone.resolved, milestone.disputed = True, False


def _no_effect(chain: Chain, escrow: Escrow, call: Call) -> None:
    """withdraw_remaining_funds only pays out; no flag changes."""


_EFFECTS: dict[str, Callable[[Chain, Escrow, Call], None]] = {
    "fund_escrow": _fund_effect,
    "change_milestone_status": _status_effect,
    "approve_milestone": _approve_effect,
    "release_funds": _release_effect,
    "dispute_escrow": _dispute_effect,
    "resolve_dispute": _resolve_effect,
    "update_escrow": _update_effect,
    "release_milestone_funds": _release_milestone_effect,
    "dispute_milestone": _dispute_milestone_effect,
    "resolve_milestone_dispute": _resolve_milestone_effect,
    "withdraw_remaining_funds": _no_effect,
}


def status_of(escrow: Escrow) -> str:
    """The read model's status filter value (single-release vocabulary)."""
    if escrow.resolved:
        return "resolved"
    if escrow.released or (escrow.kind == MULTI and all(m.released for m in escrow.milestones)):
        return "released"
    if escrow.disputed or any(m.disputed for m in escrow.milestones):
        return "inDispute"
    if escrow.milestones and all(m.approved for m in escrow.milestones):
        return "pendingRelease"
    return "working"


def escrow_json(escrow: Escrow) -> dict[str, Any]:
    """The escrow as the V1 read helpers return it (§1.6): amounts as human numbers."""
    body: dict[str, Any] = {
        "contractId": escrow.contract_id,
        "signer": escrow.signer,
        "type": escrow.kind,
        "engagementId": escrow.engagement_id,
        "title": escrow.title,
        "description": escrow.description,
        "roles": dict(escrow.roles),
        "platformFee": (Decimal(escrow.platform_fee_bps) / 100).normalize(),
        "balance": to_units(escrow.balance),
        "milestones": [_milestone_json(escrow, m) for m in escrow.milestones],
        "flags": {
            "disputed": escrow.disputed,
            "released": escrow.released,
            "resolved": escrow.resolved,
        },
        "trustline": {"address": escrow.trustline_address, "name": escrow.trustline_name},
        "receiverMemo": escrow.receiver_memo,
        "isActive": escrow.is_active,
        "createdAt": _timestamp(escrow.created_at),
        "updatedAt": _timestamp(escrow.updated_at),
    }
    if escrow.kind == SINGLE:
        body["amount"] = to_units(escrow.amount)
    return body


def _milestone_json(escrow: Escrow, milestone: Milestone) -> dict[str, Any]:
    if escrow.kind == SINGLE:
        return {
            "description": milestone.description,
            "status": milestone.status,
            "evidence": milestone.evidence,
            "approved": milestone.approved,
        }
    return {
        "description": milestone.description,
        "amount": to_units(milestone.amount),
        "receiver": escrow.receiver_of(milestone),
        "status": milestone.status,
        "evidence": milestone.evidence,
        "flags": {
            "disputed": milestone.disputed,
            "released": milestone.released,
            "resolved": milestone.resolved,
            "approved": milestone.approved,
        },
    }


def _timestamp(at: float) -> dict[str, int]:
    seconds = int(at)
    return {"_seconds": seconds, "_nanoseconds": round((at - seconds) * 1e9)}
