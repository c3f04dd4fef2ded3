"""Genuine Stellar transactions for the Trustless Work simulator (stellar-sdk).

Every build endpoint answers with a real, unsigned TransactionEnvelope: source = the role
that must sign, sequence = the account's current sequence + 1, time bounds from the
simulator's clock, one InvokeHostFunction operation calling the escrow contract's function
with the contract's argument order (TW-CONTRACT, reference/providers.md §4.2), and
fabricated Soroban resources so the envelope looks prepared. The simulator recognises a
submitted transaction by its hash, so any change to the built bytes makes it unknown.
"""

import hashlib
from collections.abc import Callable

from stellar_sdk import (
    Account,
    Address,
    Keypair,
    SorobanDataBuilder,
    StrKey,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.exceptions import BadSignatureError

from providers.sandbox.tw_chain import SINGLE, Call, Escrow, Milestone

BASE_FEE = 100
RESOURCE_FEE = 1_250_000  # stroops of XLM; what a simulated escrow call typically costs


def contract_id_for(deployer: str, salt: bytes, network_passphrase: str) -> str:
    """The address `deploy` gives a contract: hash of (network, deployer, salt)."""
    network_id = hashlib.sha256(network_passphrase.encode()).digest()
    preimage = xdr.HashIDPreimage(
        type=xdr.EnvelopeType.ENVELOPE_TYPE_CONTRACT_ID,
        contract_id=xdr.HashIDPreimageContractID(
            network_id=xdr.Hash(network_id),
            contract_id_preimage=xdr.ContractIDPreimage(
                type=xdr.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ADDRESS,
                from_address=xdr.ContractIDPreimageFromAddress(
                    address=Address(deployer).to_xdr_sc_address(), salt=xdr.Uint256(salt)
                ),
            ),
        ),
    )
    return StrKey.encode_contract(hashlib.sha256(preimage.to_xdr_bytes()).digest())


def escrow_struct(escrow: Escrow, token: str) -> xdr.SCVal:
    """The contract's Escrow struct (storage/types.rs); struct keys sorted as Soroban needs."""
    roles = {
        "approver": scval.to_address(escrow.roles["approver"]),
        "service_provider": scval.to_address(escrow.roles["serviceProvider"]),
        "platform_address": scval.to_address(escrow.roles["platformAddress"]),
        "release_signer": scval.to_address(escrow.roles["releaseSigner"]),
        "dispute_resolver": scval.to_address(escrow.roles["disputeResolver"]),
    }
    fields = {
        "engagement_id": scval.to_string(escrow.engagement_id),
        "title": scval.to_string(escrow.title),
        "description": scval.to_string(escrow.description),
        "platform_fee": scval.to_uint32(escrow.platform_fee_bps),
        "milestones": scval.to_vec([_milestone_struct(escrow, m) for m in escrow.milestones]),
        "trustline": scval.to_struct({"address": scval.to_address(token)}),
        "receiver_memo": scval.to_int128(escrow.receiver_memo),
    }
    if escrow.kind == SINGLE:
        roles["receiver"] = scval.to_address(escrow.roles["receiver"])
        fields["amount"] = scval.to_int128(escrow.amount)
        fields["flags"] = scval.to_struct(
            {
                "disputed": scval.to_bool(escrow.disputed),
                "released": scval.to_bool(escrow.released),
                "resolved": scval.to_bool(escrow.resolved),
            }
        )
    elif escrow.roles.get("receiver"):
        roles["receiver"] = scval.to_address(escrow.roles["receiver"])
    fields["roles"] = scval.to_struct(roles)
    return scval.to_struct(fields)


def _milestone_struct(escrow: Escrow, milestone: Milestone) -> xdr.SCVal:
    fields = {
        "description": scval.to_string(milestone.description),
        "status": scval.to_string(milestone.status),
        "evidence": scval.to_string(milestone.evidence),
    }
    if escrow.kind == SINGLE:
        fields["approved"] = scval.to_bool(milestone.approved)
        return scval.to_struct(fields)
    fields["amount"] = scval.to_int128(milestone.amount)
    fields["receiver"] = scval.to_address(escrow.receiver_of(milestone))
    fields["flags"] = scval.to_struct(
        {
            "approved": scval.to_bool(milestone.approved),
            "disputed": scval.to_bool(milestone.disputed),
            "released": scval.to_bool(milestone.released),
            "resolved": scval.to_bool(milestone.resolved),
        }
    )
    return scval.to_struct(fields)


def _distributions(call: Call) -> xdr.SCVal:
    # A Soroban Map is ordered by key; order the addresses' XDR the same way.
    entries = sorted(
        (
            (scval.to_address(address), scval.to_int128(amount))
            for address, amount in call.distributions
        ),
        key=lambda pair: pair[0].to_xdr_bytes(),
    )
    return scval.to_map(dict(entries))


def invocation(
    call: Call, *, tw_fee_address: str, token: str, fund_struct: Escrow | None = None
) -> tuple[str, list[xdr.SCVal]]:
    """(function name, arguments) of the contract call that carries out `call`.

    Argument order as in the contracts: fund_escrow(signer, expected_escrow, amount),
    change_milestone_status(index, status, evidence?, service_provider),
    approve_milestone(index, approver), release_funds(release_signer, tw_address),
    dispute_escrow(signer), resolve_dispute(resolver, tw_address, distributions),
    update_escrow(platform, escrow), release_milestone_funds(release_signer, tw_address,
    index u32), dispute_milestone(index u32, signer), resolve_milestone_dispute(resolver,
    index u32, tw_address, distributions), withdraw_remaining_funds(resolver, tw_address,
    distributions).
    """
    signer, tw = scval.to_address(call.signer), scval.to_address(tw_fee_address)
    index_i128, index_u32 = scval.to_int128(call.index), scval.to_uint32(call.index)
    evidence = scval.to_void() if call.evidence is None else scval.to_string(call.evidence)
    struct = fund_struct if call.op == "fund_escrow" else call.escrow
    args: dict[str, Callable[[], list[xdr.SCVal]]] = {
        "fund_escrow": lambda: [signer, _struct(struct, token), scval.to_int128(call.amount)],
        "change_milestone_status": lambda: [
            index_i128,
            scval.to_string(call.status),
            evidence,
            signer,
        ],
        "approve_milestone": lambda: [index_i128, signer],
        "release_funds": lambda: [signer, tw],
        "dispute_escrow": lambda: [signer],
        "resolve_dispute": lambda: [signer, tw, _distributions(call)],
        "update_escrow": lambda: [signer, _struct(struct, token)],
        "release_milestone_funds": lambda: [signer, tw, index_u32],
        "dispute_milestone": lambda: [index_u32, signer],
        "resolve_milestone_dispute": lambda: [signer, index_u32, tw, _distributions(call)],
        "withdraw_remaining_funds": lambda: [signer, tw, _distributions(call)],
    }
    if call.op not in args:
        raise ValueError(f"no contract function for {call.op!r}")
    return call.op, args[call.op]()


def _struct(escrow: Escrow | None, token: str) -> xdr.SCVal:
    if escrow is None:
        raise ValueError("this call needs the escrow's properties")
    return escrow_struct(escrow, token)


def deploy_invocation(
    call: Call, *, wasm_hash: bytes, salt: bytes, token: str
) -> tuple[str, list[xdr.SCVal]]:
    """The factory's deploy(deployer, wasm_hash, salt, init_fn, init_args, ctor_args)."""
    if call.escrow is None:
        raise ValueError("deploy needs the escrow properties")
    return "deploy", [
        scval.to_address(call.signer),
        scval.to_bytes(wasm_hash),
        scval.to_bytes(salt),
        scval.to_symbol("initialize_escrow"),
        scval.to_vec([escrow_struct(call.escrow, token)]),
        scval.to_vec([]),
    ]


def build_envelope(
    *,
    source: str,
    current_sequence: int,
    contract_id: str,
    function: str,
    args: list[xdr.SCVal],
    min_time: int,
    max_time: int,
    network_passphrase: str,
) -> TransactionEnvelope:
    """An unsigned, Soroban-prepared envelope invoking `function` on `contract_id`."""
    footprint_key = xdr.LedgerKey(
        type=xdr.LedgerEntryType.CONTRACT_DATA,
        contract_data=xdr.LedgerKeyContractData(
            contract=Address(contract_id).to_xdr_sc_address(),
            key=xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE),
            durability=xdr.ContractDataDurability.PERSISTENT,
        ),
    )
    data = SorobanDataBuilder()  # type: ignore[no-untyped-call]
    data.set_resource_fee(RESOURCE_FEE)
    data.set_resources(instructions=4_000_000, disk_read_bytes=12_000, write_bytes=2_000)
    data.set_read_write([footprint_key])
    soroban_data = data.build()  # type: ignore[no-untyped-call]
    builder = TransactionBuilder(
        Account(source, current_sequence), network_passphrase, base_fee=BASE_FEE
    )
    builder.append_invoke_contract_function_op(
        contract_id=contract_id, function_name=function, parameters=args
    )
    builder.set_soroban_data(soroban_data)
    builder.add_time_bounds(min_time, max_time)
    return builder.build()


def signed_by(envelope: TransactionEnvelope, account_id: str) -> bool:
    """Whether an envelope signature verifies for `account_id` (under its passphrase)."""
    keypair = Keypair.from_public_key(account_id)
    payload = envelope.hash()
    for decorated in envelope.signatures:
        if decorated.signature_hint != keypair.signature_hint():
            continue
        try:
            keypair.verify(payload, decorated.signature)
        except BadSignatureError:
            continue
        return True
    return False
