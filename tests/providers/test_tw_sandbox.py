"""The Trustless Work simulator over real HTTP: auth, limits, genuine XDR, signatures,
sequence and time bounds, contract rules, exact fee math, the indexer, faults, control."""

from decimal import Decimal
from typing import Any

import pytest
import requests
from stellar_sdk import (
    Address,
    Asset,
    InvokeHostFunction,
    Keypair,
    Network,
    StrKey,
    TransactionEnvelope,
    scval,
)
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response

from providers import json_numbers
from providers.sandbox.server import SandboxServer
from providers.sandbox.trustless_work import TrustlessWorkSimulator
from tests.providers.tw_support import (  # noqa: F401 - fixtures
    TESTNET,
    Parties,
    TwHttp,
    parties,
    sim,
    single_release_body,
    tw,
    tx_hash,
    wait_for,
)

SR = "/escrow/single-release"
MR = "/escrow/multi-release"
NOT_COMPLETE = "not be complete yet"

V1_ROUTES = [
    ("POST", "/deployer/single-release"),
    ("POST", "/deployer/multi-release"),
    *[
        ("POST", f"/escrow/{kind}/{action}")
        for kind in ("single-release", "multi-release")
        for action in ("fund-escrow", "change-milestone-status", "approve-milestone")
    ],
    ("PUT", f"{SR}/update-escrow"),
    ("PUT", f"{MR}/update-escrow"),
    ("POST", f"{SR}/release-funds"),
    ("POST", f"{SR}/dispute-escrow"),
    ("POST", f"{SR}/resolve-dispute"),
    ("POST", f"{MR}/release-milestone-funds"),
    ("POST", f"{MR}/dispute-milestone"),
    ("POST", f"{MR}/resolve-milestone-dispute"),
    ("POST", f"{MR}/withdraw-remaining-funds"),
    ("GET", f"{SR}/get-multiple-escrow-balance"),
    ("GET", f"{MR}/get-multiple-escrow-balance"),
    ("POST", "/helper/send-transaction"),
    ("POST", "/helper/set-trustline"),
    ("GET", "/helper/get-escrow-by-contract-ids"),
    ("GET", "/helper/get-escrows-by-signer"),
    ("GET", "/helper/get-escrows-by-role"),
    ("POST", "/indexer/update-from-txHash"),
]


def body_of(response: requests.Response) -> Any:
    return json_numbers.loads(response.text)


def deploy(tw: TwHttp, parties: Parties, **over: Any) -> str:
    result = tw.run(
        "/deployer/single-release", single_release_body(parties, tw.sim, **over), parties.platform
    )
    return str(result["contractId"])


def fund(tw: TwHttp, parties: Parties, contract_id: str, amount: str = "100") -> None:
    body = {
        "contractId": contract_id,
        "signer": parties.buyer.public_key,
        "amount": Decimal(amount),
    }
    tw.run(f"{SR}/fund-escrow", body, parties.buyer)


def complete_and_approve(tw: TwHttp, parties: Parties, contract_id: str, index: str = "0") -> None:
    base = MR if tw.sim.escrow_state(contract_id)["type"] == "multi-release" else SR  # type: ignore[index]
    status = {
        "contractId": contract_id,
        "milestoneIndex": index,
        "newStatus": "completed",
        "newEvidence": "https://example.com/proof",
        "serviceProvider": parties.seller.public_key,
    }
    tw.run(f"{base}/change-milestone-status", status, parties.seller)
    approve = {
        "contractId": contract_id,
        "milestoneIndex": index,
        "approver": parties.buyer.public_key,
    }
    tw.run(f"{base}/approve-milestone", approve, parties.buyer)


def invoked(xdr: str) -> tuple[str, str, str, int, list[Any]]:
    """(source, contract, function, sequence, native args) of a one-operation envelope."""
    envelope = TransactionEnvelope.from_xdr(xdr, TESTNET)
    tx = envelope.transaction
    assert len(tx.operations) == 1
    operation = tx.operations[0]
    assert isinstance(operation, InvokeHostFunction)
    call = operation.host_function.invoke_contract
    assert call is not None
    contract = Address.from_xdr_sc_address(call.contract_address).address
    args = [scval.to_native(a) for a in call.args]
    return tx.source.account_id, contract, call.function_name.sc_symbol.decode(), tx.sequence, args


# --- Auth and rate limit --------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
def test_every_v1_path_needs_a_valid_api_key(tw: TwHttp, method: str, path: str) -> None:
    missing = tw.request(method, path, {}, key=None)
    wrong = tw.request(method, path, {}, key="not-a-key")

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "API key" in body_of(missing)["message"]


def test_fifty_requests_a_minute_per_key_then_429(tw: TwHttp, parties: Parties) -> None:
    tw.sim.add_api_key("second-key")
    listing = {"params": {"signer": parties.platform.public_key}}

    answers = [tw.get("/helper/get-escrows-by-signer", **listing).status_code for _ in range(51)]
    other_key = tw.get("/helper/get-escrows-by-signer", key="second-key", **listing)
    tw.sim.advance_clock(60)
    after_a_minute = tw.get("/helper/get-escrows-by-signer", **listing)

    assert answers == [200] * 50 + [429]
    assert other_key.status_code == 200
    assert after_a_minute.status_code == 200
    assert tw.sim.stats()["rateLimited"] == 1


def test_the_rate_limit_can_be_switched_off(tw: TwHttp, parties: Parties) -> None:
    tw.sim.configure(rate_limit=False)
    listing = {"params": {"signer": parties.platform.public_key}}

    answers = {tw.get("/helper/get-escrows-by-signer", **listing).status_code for _ in range(60)}

    assert answers == {200}


# --- Genuine XDR ----------------------------------------------------------------------------------


def test_build_endpoints_return_genuine_xdr_with_the_contract_calls(
    tw: TwHttp, parties: Parties
) -> None:
    sim = tw.sim
    platform, buyer, seller = parties.platform, parties.buyer, parties.seller
    start_seq = int(sim.account(platform.public_key)["sequence"])  # type: ignore[index]

    deploy_xdr = tw.build("/deployer/single-release", single_release_body(parties, sim))
    source, factory, function, sequence, args = invoked(deploy_xdr)
    envelope = TransactionEnvelope.from_xdr(deploy_xdr, TESTNET)
    contract_id = str(body_of(tw.send(tw.sign(deploy_xdr, platform)))["contractId"])

    assert (source, function, sequence) == (platform.public_key, "deploy", start_seq + 1)
    assert StrKey.is_valid_contract(factory)
    assert args[0].address == platform.public_key
    assert args[3] == "initialize_escrow"
    assert args[4][0]["amount"] == 1_000_000_000
    assert args[4][0]["platform_fee"] == 250
    assert args[4][0]["roles"]["receiver"].address == seller.public_key
    preconditions = envelope.transaction.preconditions
    assert preconditions is not None
    assert preconditions.time_bounds is not None
    assert preconditions.time_bounds.max_time == int(sim.now()) + 300
    assert envelope.transaction.soroban_data is not None
    assert envelope.signatures == []

    fund_xdr = tw.build(
        f"{SR}/fund-escrow",
        {"contractId": contract_id, "signer": buyer.public_key, "amount": Decimal("100")},
    )
    source, contract, function, _, args = invoked(fund_xdr)
    assert (source, contract, function) == (buyer.public_key, contract_id, "fund_escrow")
    assert args[0].address == buyer.public_key
    assert args[1]["engagement_id"] == "ord_test_1"
    assert args[2] == 1_000_000_000

    status_xdr = tw.build(
        f"{SR}/change-milestone-status",
        {
            "contractId": contract_id,
            "milestoneIndex": "0",
            "newStatus": "completed",
            "serviceProvider": seller.public_key,
        },
    )
    source, _, function, _, args = invoked(status_xdr)
    assert (source, function) == (seller.public_key, "change_milestone_status")
    assert args[:3] == [0, "completed", None]
    assert args[3].address == seller.public_key

    release_xdr_args = invoked(
        tw.build(
            "/escrow/single-release/dispute-escrow",
            {"contractId": contract_id, "signer": buyer.public_key},
        )
    )
    assert release_xdr_args[2] == "dispute_escrow"


def test_the_same_seed_builds_the_same_bytes() -> None:
    def scenario(seed: int) -> tuple[str, str]:
        sim = TrustlessWorkSimulator(seed=seed)
        platform = Keypair.from_raw_ed25519_seed(bytes(32))
        sim.create_account(platform.public_key, sequence=1000)
        with SandboxServer(sim) as server:
            tw = TwHttp(server.url, sim)
            parties = Parties(
                platform, platform, platform, Keypair.from_raw_ed25519_seed(b"r" * 32), platform
            )
            body = single_release_body(parties, sim)
            xdr = tw.build("/deployer/single-release", body)
            return xdr, invoked(xdr)[1]

    assert scenario(3) == scenario(3)
    assert scenario(3) != scenario(4)


# --- Contract rules at build time -----------------------------------------------------------------


def test_builds_refuse_with_the_contract_messages(tw: TwHttp, parties: Parties) -> None:
    contract_id = deploy(tw, parties)
    fund(tw, parties, contract_id)
    cid = {"contractId": contract_id}

    cases = [
        (
            f"{SR}/release-funds",
            {**cid, "releaseSigner": parties.platform.public_key},
            "The escrow must be completed to release earnings",
        ),
        (
            f"{SR}/release-funds",
            {**cid, "releaseSigner": parties.buyer.public_key},
            "Only the release signer can release the escrow earnings",
        ),
        (
            f"{SR}/approve-milestone",
            {**cid, "milestoneIndex": "0", "approver": parties.buyer.public_key},
            "The milestone status cannot be empty",
        ),
        (
            f"{SR}/approve-milestone",
            {**cid, "milestoneIndex": "0", "approver": parties.seller.public_key},
            "Only the approver can change milestone flag",
        ),
        (
            f"{SR}/change-milestone-status",
            {
                **cid,
                "milestoneIndex": "3",
                "newStatus": "done",
                "serviceProvider": parties.seller.public_key,
            },
            "Invalid milestone index",
        ),
        (
            f"{SR}/dispute-escrow",
            {**cid, "signer": parties.resolver.public_key},
            "The dispute resolver cannot dispute the escrow.",
        ),
        (
            f"{SR}/dispute-escrow",
            {**cid, "signer": parties.outsider.public_key},
            "You are not authorized to change the dispute flag",
        ),
        (
            f"{SR}/resolve-dispute",
            {
                **cid,
                "disputeResolver": parties.resolver.public_key,
                "distributions": [{"address": parties.buyer.public_key, "amount": Decimal(100)}],
            },
            "Escrow not in dispute",
        ),
        (
            f"{SR}/fund-escrow",
            {
                "contractId": StrKey.encode_contract(bytes(32)),
                "signer": parties.buyer.public_key,
                "amount": 1,
            },
            "Escrow not found",
        ),
        (
            f"{SR}/fund-escrow",
            {**cid, "signer": parties.buyer.public_key, "amount": 0},
            "Amount cannot be equal to or less than zero",
        ),
        (
            f"{SR}/fund-escrow",
            {**cid, "signer": parties.buyer.public_key, "amount": 901},
            "The signer has insufficient funds to fund the escrow.",
        ),
        (
            "/deployer/single-release",
            single_release_body(parties, tw.sim, platformFee=100),
            "The platform fee cannot exceed 99%",
        ),
        (f"{SR}/update-escrow", {**cid, "signer": parties.platform.public_key, "escrow": {}}, None),
    ]
    for path, body, message in cases:
        method = "PUT" if path.endswith("update-escrow") else "POST"
        response = tw.request(method, path, body)
        assert response.status_code == 400, (path, response.text)
        if message is not None:
            assert body_of(response)["message"] == message, path
    assert tw.sim.stats()["built"] == 2  # the deploy and the fund, nothing refused


def test_malformed_bodies_get_class_validator_style_messages(tw: TwHttp, parties: Parties) -> None:
    response = tw.post(f"{SR}/fund-escrow", {"contractId": "nope", "amount": Decimal("1.00000001")})

    assert response.status_code == 400
    assert body_of(response)["message"] == [
        "contractId must be a valid contract address (C...)",
        "signer should not be empty",
        "amount must have at most 7 decimal places",
    ]
    assert tw.post(f"{SR}/fund-escrow", None).status_code == 400
    bad_json = requests.post(
        tw.base_url + f"{SR}/fund-escrow",
        data="{not json",
        headers={"x-api-key": "sandbox-trustless-work-key"},
        timeout=10,
    )
    assert bad_json.status_code == 400


# --- Signatures, sequence, time bounds ------------------------------------------------------------


def test_every_role_must_sign_its_own_step(tw: TwHttp, parties: Parties) -> None:
    """Each step signed by the wrong key is tx_bad_auth and changes nothing; then it works."""
    p = parties
    deploy_xdr = tw.build("/deployer/single-release", single_release_body(p, tw.sim))
    assert body_of(tw.send(tw.sign(deploy_xdr, p.outsider)))["message"].endswith("tx_bad_auth")
    contract_id = str(body_of(tw.send(tw.sign(deploy_xdr, p.platform)))["contractId"])
    cid = {"contractId": contract_id}
    steps: list[tuple[str, dict[str, Any], Keypair]] = [
        (f"{SR}/fund-escrow", {**cid, "signer": p.buyer.public_key, "amount": 100}, p.buyer),
        (
            f"{SR}/change-milestone-status",
            {
                **cid,
                "milestoneIndex": "0",
                "newStatus": "done",
                "serviceProvider": p.seller.public_key,
            },
            p.seller,
        ),
        (
            f"{SR}/approve-milestone",
            {**cid, "milestoneIndex": "0", "approver": p.buyer.public_key},
            p.buyer,
        ),
        (f"{SR}/dispute-escrow", {**cid, "signer": p.seller.public_key}, p.seller),
        (
            f"{SR}/resolve-dispute",
            {
                **cid,
                "disputeResolver": p.resolver.public_key,
                "distributions": [{"address": p.seller.public_key, "amount": 100}],
            },
            p.resolver,
        ),
    ]

    for path, body, signer in steps:
        xdr = tw.build(path, body)
        wrong = tw.send(tw.sign(xdr, p.outsider))
        right = tw.send(tw.sign(xdr, signer))

        assert wrong.status_code == 400, path
        assert body_of(wrong) == {"status": "FAILED", "message": "Transaction failed: tx_bad_auth"}
        assert right.status_code == 201, (path, right.text)

    assert tw.sim.stats()["applied"][contract_id] == {
        "deploy": 1,
        "fund_escrow": 1,
        "change_milestone_status": 1,
        "approve_milestone": 1,
        "dispute_escrow": 1,
        "resolve_dispute": 1,
    }


def test_the_contract_rules_are_checked_again_at_submit(tw: TwHttp, parties: Parties) -> None:
    """A release built while allowed fails if a dispute lands first; its sequence is spent."""
    p, sim = parties, tw.sim
    contract_id = deploy(tw, p)
    fund(tw, p, contract_id)
    complete_and_approve(tw, p, contract_id)
    release = {"contractId": contract_id, "releaseSigner": p.platform.public_key}
    release_xdr = tw.build(f"{SR}/release-funds", release)
    by_outsider = tw.send(tw.sign(release_xdr, p.outsider))
    tw.run(
        f"{SR}/dispute-escrow", {"contractId": contract_id, "signer": p.buyer.public_key}, p.buyer
    )
    sequence = int(sim.account(p.platform.public_key)["sequence"])  # type: ignore[index]

    refused = tw.send(tw.sign(release_xdr, p.platform))
    again = tw.send(tw.sign(release_xdr, p.platform))

    assert body_of(by_outsider)["message"] == "Transaction failed: tx_bad_auth"
    assert body_of(refused) == {
        "status": "FAILED",
        "message": "Transaction failed: Escrow has been opened for dispute resolution",
    }
    assert int(sim.account(p.platform.public_key)["sequence"]) == sequence + 1  # type: ignore[index]
    assert body_of(again)["message"] == "Transaction failed: tx_bad_seq"
    assert sim.applied_count(contract_id, "release_funds") == 0
    assert sim.stroops(contract_id) == 1_000_000_000
    assert sim.transaction(tx_hash(release_xdr))["state"] == "failed"


def test_an_unsigned_or_doubly_built_transaction_is_refused(tw: TwHttp, parties: Parties) -> None:
    contract_id = deploy(tw, parties)
    body = {"contractId": contract_id, "signer": parties.buyer.public_key, "amount": 10}
    # Both built from the same sequence number: only one can ever land.
    first = tw.build(f"{SR}/fund-escrow", body)
    second = tw.build(f"{SR}/fund-escrow", {**body, "amount": 20})

    unsigned = tw.send(first)
    ok = tw.send(tw.sign(first, parties.buyer))
    stale = tw.send(tw.sign(second, parties.buyer))

    assert body_of(unsigned)["message"] == "Transaction failed: tx_bad_auth"
    assert ok.status_code == 201
    assert body_of(stale) == {"status": "FAILED", "message": "Transaction failed: tx_bad_seq"}
    assert tw.sim.applied_count(contract_id, "fund_escrow") == 1
    assert tw.sim.balance(contract_id) == Decimal(10)


def test_an_expired_transaction_is_too_late(tw: TwHttp, parties: Parties) -> None:
    xdr = tw.build("/deployer/single-release", single_release_body(parties, tw.sim))
    tw.sim.advance_clock(301)

    response = tw.send(tw.sign(xdr, parties.platform))

    assert body_of(response) == {"status": "FAILED", "message": "Transaction failed: tx_too_late"}
    assert tw.sim.transaction(tx_hash(xdr))["state"] == "built"


def test_a_modified_or_garbled_transaction_is_refused(tw: TwHttp, parties: Parties) -> None:
    xdr = tw.build("/deployer/single-release", single_release_body(parties, tw.sim))
    envelope = TransactionEnvelope.from_xdr(xdr, TESTNET)
    envelope.transaction.fee += 1  # any change makes it another transaction
    envelope.sign(parties.platform)

    modified = tw.send(envelope.to_xdr())
    garbled = tw.send("AAAA-not-xdr")

    assert body_of(modified)["status"] == "FAILED"
    assert "unknown transaction" in body_of(modified)["message"]
    assert garbled.status_code == 400


def test_a_signature_for_another_network_is_bad_auth(tw: TwHttp, parties: Parties) -> None:
    xdr = tw.build("/deployer/single-release", single_release_body(parties, tw.sim))
    mainnet_signed = tw.sign(xdr, parties.platform, Network.PUBLIC_NETWORK_PASSPHRASE)

    response = tw.send(mainnet_signed)

    assert body_of(response)["message"] == "Transaction failed: tx_bad_auth"


# --- Flows and exact money ------------------------------------------------------------------------


def test_single_release_flow_pays_the_fees_exact_to_the_stroop(
    tw: TwHttp, parties: Parties
) -> None:
    sim = tw.sim
    contract_id = deploy(tw, parties, amount=Decimal("123.4567891"))
    fund(tw, parties, contract_id, "123.4567891")
    complete_and_approve(tw, parties, contract_id)

    tw.run(
        f"{SR}/release-funds",
        {"contractId": contract_id, "releaseSigner": parties.platform.public_key},
        parties.platform,
    )

    # 0.3 % and 2.5 % of 1,234,567,891 stroops, rounded down; the receiver gets the rest.
    assert sim.stroops(sim.tw_fee_address) == 3_703_703
    assert sim.stroops(parties.platform.public_key) == 30_864_197
    assert sim.stroops(parties.seller.public_key) == 1_199_999_991
    assert sim.stroops(contract_id) == 0
    assert sim.stroops(parties.buyer.public_key) == 10_000_000_000 - 1_234_567_891
    escrow = tw.escrow(contract_id)
    assert escrow is not None
    assert escrow["flags"] == {"disputed": False, "released": True, "resolved": False}
    assert escrow["amount"] == Decimal("123.4567891")
    assert escrow["balance"] == 0
    assert escrow["milestones"] == [
        {
            "description": "Deliver the logo",
            "status": "completed",
            "evidence": "https://example.com/proof",
            "approved": True,
        }
    ]
    again = tw.post(
        f"{SR}/release-funds",
        {"contractId": contract_id, "releaseSigner": parties.platform.public_key},
    )
    assert body_of(again)["message"] == "The escrow funds have been released."


def test_multi_release_pays_each_milestone_to_its_receiver(tw: TwHttp, parties: Parties) -> None:
    sim, p = tw.sim, parties
    second_receiver = Keypair.random()
    sim.create_account(second_receiver.public_key)
    body = single_release_body(p, sim, platformFee=Decimal(1))
    body.pop("amount")
    body["milestones"] = [
        {"description": "Sketches", "amount": Decimal(60), "receiver": p.seller.public_key},
        {"description": "Final art", "amount": Decimal(40), "receiver": second_receiver.public_key},
    ]
    contract_id = str(tw.run("/deployer/multi-release", body, p.platform)["contractId"])
    tw.run(
        f"{MR}/fund-escrow",
        {"contractId": contract_id, "signer": p.buyer.public_key, "amount": 100},
        p.buyer,
    )
    release = {"contractId": contract_id, "releaseSigner": p.platform.public_key}

    too_early = tw.post(f"{MR}/release-milestone-funds", {**release, "milestoneIndex": "1"})
    for index in ("0", "1"):
        complete_and_approve(tw, p, contract_id, index)
        tw.run(f"{MR}/release-milestone-funds", {**release, "milestoneIndex": index}, p.platform)

    assert body_of(too_early)["message"] == "The milestone must be completed to release funds"
    assert sim.stroops(p.seller.public_key) == 592_200_000  # 60 - 0.3 % - 1 %
    assert sim.stroops(second_receiver.public_key) == 394_800_000  # 40 - 0.3 % - 1 %
    assert sim.stroops(sim.tw_fee_address) == 1_800_000 + 1_200_000
    assert sim.stroops(p.platform.public_key) == 6_000_000 + 4_000_000
    assert sim.stroops(contract_id) == 0
    assert sim.applied_count(contract_id, "release_milestone_funds") == 2
    escrow = tw.escrow(contract_id)
    assert escrow is not None
    assert "amount" not in escrow
    assert [m["flags"]["released"] for m in escrow["milestones"]] == [True, True]
    assert escrow["milestones"][1] == {
        "description": "Final art",
        "amount": Decimal(40),
        "receiver": second_receiver.public_key,
        "status": "completed",
        "evidence": "https://example.com/proof",
        "flags": {"disputed": False, "released": True, "resolved": False, "approved": True},
    }


def test_dispute_then_resolve_sixty_forty_charges_fees_pro_rata(
    tw: TwHttp, parties: Parties
) -> None:
    sim, p = tw.sim, parties
    contract_id = deploy(tw, p)
    fund(tw, p, contract_id)
    tw.run(
        f"{SR}/dispute-escrow", {"contractId": contract_id, "signer": p.buyer.public_key}, p.buyer
    )
    resolve = {
        "contractId": contract_id,
        "disputeResolver": p.resolver.public_key,
        "distributions": [
            {"address": p.buyer.public_key, "amount": Decimal(60)},
            {"address": p.seller.public_key, "amount": Decimal(40)},
        ],
    }

    wrong_sum = tw.post(
        f"{SR}/resolve-dispute", {**resolve, "distributions": resolve["distributions"][:1]}
    )
    tw.run(f"{SR}/resolve-dispute", resolve, p.resolver)

    assert body_of(wrong_sum)["message"].startswith("The sum of distributions must equal")
    # Fees on 100: 0.3 + 2.5 = 2.8 USDC, charged 60:40 to the two sides.
    assert sim.stroops(p.buyer.public_key) == 10_000_000_000 - 1_000_000_000 + 583_200_000
    assert sim.stroops(p.seller.public_key) == 388_800_000
    assert sim.stroops(sim.tw_fee_address) == 3_000_000
    assert sim.stroops(p.platform.public_key) == 25_000_000
    assert sim.stroops(contract_id) == 0
    escrow = tw.escrow(contract_id)
    assert escrow is not None
    assert escrow["flags"] == {"disputed": False, "released": False, "resolved": True}


def test_a_split_whose_rounding_overpays_fails_like_the_token_transfer(
    tw: TwHttp, parties: Parties
) -> None:
    """Fee shares round down, so 6.0000001 / 4 of 10.0000001 would pay out one stroop more
    than the contract holds: the real contract's last transfer fails, and so does this."""
    p = parties
    contract_id = deploy(tw, p, amount=Decimal("10.0000001"))
    fund(tw, p, contract_id, "10.0000001")
    tw.run(
        f"{SR}/dispute-escrow", {"contractId": contract_id, "signer": p.seller.public_key}, p.seller
    )

    response = tw.post(
        f"{SR}/resolve-dispute",
        {
            "contractId": contract_id,
            "disputeResolver": p.resolver.public_key,
            "distributions": [
                {"address": p.buyer.public_key, "amount": Decimal("6.0000001")},
                {"address": p.seller.public_key, "amount": Decimal(4)},
            ],
        },
    )

    assert response.status_code == 400
    assert "not sufficient" in body_of(response)["message"]
    assert tw.sim.stroops(contract_id) == 100_000_001


def test_update_escrow_before_funding_only(tw: TwHttp, parties: Parties) -> None:
    p = parties
    contract_id = deploy(tw, p)
    escrow = tw.escrow(contract_id)
    assert escrow is not None
    new = {
        **escrow,
        "title": "Logo design, revised",
        "milestones": [{"description": "Deliver the logo", "status": "", "approved": False}],
    }
    update = {"contractId": contract_id, "signer": p.platform.public_key, "escrow": new}

    result = tw.run(f"{SR}/update-escrow", update, p.platform, method="PUT")
    fund(tw, p, contract_id, "1")
    refused = tw.request("PUT", f"{SR}/update-escrow", update)

    assert result["escrow"]["title"] == "Logo design, revised"
    assert body_of(refused)["message"] == "Escrow has funds"


# --- Indexer lag and reads ------------------------------------------------------------------------


def test_the_read_model_lags_until_the_delay_passes(tw: TwHttp, parties: Parties) -> None:
    tw.sim.configure(indexer_lag_seconds=30)
    contract_id = deploy(tw, parties)

    unindexed_read = tw.escrow(contract_id)
    on_chain = tw.escrow(contract_id, on_chain=True)
    fund_before = tw.post(
        f"{SR}/fund-escrow",
        {"contractId": contract_id, "signer": parties.buyer.public_key, "amount": 1},
    )
    tw.sim.advance_clock(30)
    indexed = tw.escrow(contract_id)

    assert unindexed_read is None
    assert on_chain is not None
    assert body_of(fund_before)["message"] == "Escrow not found"
    assert indexed is not None
    assert indexed["contractId"] == contract_id


def test_update_from_tx_hash_catches_the_read_model_up(tw: TwHttp, parties: Parties) -> None:
    contract_id = deploy(tw, parties)
    tw.sim.configure(indexer_lag_seconds=None)  # only update-from-txHash moves it now
    xdr = tw.build(
        f"{SR}/fund-escrow",
        {"contractId": contract_id, "signer": parties.buyer.public_key, "amount": 25},
    )
    tw.send(tw.sign(xdr, parties.buyer))

    stale = tw.escrow(contract_id)
    tw.sim.advance_clock(3600)
    still_stale = tw.escrow(contract_id)
    updated = tw.post("/indexer/update-from-txHash", {"txHash": tx_hash(xdr)})
    fresh = tw.escrow(contract_id)
    unknown = tw.post("/indexer/update-from-txHash", {"txHash": "ab" * 32})

    assert stale is not None
    assert still_stale is not None
    assert fresh is not None
    assert (stale["balance"], still_stale["balance"], fresh["balance"]) == (0, 0, 25)
    assert updated.status_code == 201
    assert body_of(updated)["status"] == "SUCCESS"
    assert unknown.status_code == 404


def test_read_helpers_filter_by_signer_role_and_balances(tw: TwHttp, parties: Parties) -> None:
    first = deploy(tw, parties, engagementId="ord_a")
    second = deploy(tw, parties, engagementId="ord_b")
    fund(tw, parties, second, "7.5")
    signer = parties.platform.public_key

    by_engagement = body_of(
        tw.get("/helper/get-escrows-by-signer", params={"signer": signer, "engagementId": "ord_b"})
    )
    by_role = body_of(
        tw.get(
            "/helper/get-escrows-by-role",
            params={
                "role": "receiver",
                "roleAddress": parties.seller.public_key,
                "orderDirection": "asc",
            },
        )
    )
    by_stranger = body_of(
        tw.get(
            "/helper/get-escrows-by-role",
            params={"role": "approver", "roleAddress": parties.outsider.public_key},
        )
    )
    balances = body_of(
        tw.get(
            f"{SR}/get-multiple-escrow-balance",
            params={"signer": signer, "addresses[]": [first, second]},
        )
    )
    too_many = tw.get(
        f"{SR}/get-multiple-escrow-balance", params={"signer": signer, "addresses[]": [first] * 21}
    )

    assert [e["contractId"] for e in by_engagement] == [second]
    assert {e["contractId"] for e in by_role} == {first, second}
    assert by_stranger == []
    assert balances == [
        {"address": first, "balance": 0},
        {"address": second, "balance": Decimal("7.5")},
    ]
    assert body_of(too_many)["message"] == "You have requested too many escrows"


# --- Faults ---------------------------------------------------------------------------------------


def test_a_429_storm_then_recovery(tw: TwHttp, parties: Parties) -> None:
    tw.sim.add_fault("rate_limit", path="get-escrows", times=3)
    params = {"params": {"signer": parties.platform.public_key}}

    codes = [tw.get("/helper/get-escrows-by-signer", **params).status_code for _ in range(4)]

    assert codes == [429, 429, 429, 200]


def test_server_errors_are_injected_with_their_status(tw: TwHttp, parties: Parties) -> None:
    tw.sim.add_fault("server_error", method="POST", status=503, times=1)

    failed = tw.post("/deployer/single-release", single_release_body(parties, tw.sim))
    retried = tw.post("/deployer/single-release", single_release_body(parties, tw.sim))

    assert failed.status_code == 503
    assert retried.status_code == 201


def test_a_timeout_before_processing_changes_nothing(tw: TwHttp, parties: Parties) -> None:
    xdr = tw.build("/deployer/single-release", single_release_body(parties, tw.sim))
    tw.sim.add_fault("timeout", path="send-transaction", hold_seconds=30)

    with pytest.raises(requests.Timeout):
        tw.send(tw.sign(xdr, parties.platform), timeout=0.5)
    tw.sim.release_holds()

    assert tw.sim.transaction(tx_hash(xdr))["state"] == "built"


def test_a_timeout_after_applying_still_applies_once(tw: TwHttp, parties: Parties) -> None:
    contract_id = deploy(tw, parties)
    xdr = tw.build(
        f"{SR}/fund-escrow",
        {"contractId": contract_id, "signer": parties.buyer.public_key, "amount": 100},
    )
    tw.sim.add_fault("timeout_after_apply", path="send-transaction", hold_seconds=30)

    with pytest.raises(requests.Timeout):
        tw.send(tw.sign(xdr, parties.buyer), timeout=0.5)
    wait_for(lambda: tw.sim.transaction(tx_hash(xdr))["state"] == "applied")
    tw.sim.release_holds()
    again = tw.send(tw.sign(xdr, parties.buyer))

    assert body_of(again)["status"] == "SUCCESS"  # duplicate_submission="success": no effect
    assert tw.sim.applied_count(contract_id, "fund_escrow") == 1
    assert tw.sim.stroops(contract_id) == 1_000_000_000


def test_not_complete_yet_while_the_transaction_lands_later(tw: TwHttp, parties: Parties) -> None:
    contract_id = deploy(tw, parties)
    xdr = tw.build(
        f"{SR}/fund-escrow",
        {"contractId": contract_id, "signer": parties.buyer.public_key, "amount": 100},
    )
    signed = tw.sign(xdr, parties.buyer)
    tw.sim.add_fault("not_complete_yet", path="send-transaction", lands_after_requests=2)

    first = tw.send(signed)
    state_after_first = tw.sim.transaction(tx_hash(xdr))["state"]
    resent = tw.send(signed)  # one request later: still settling
    tw.get("/helper/get-escrows-by-signer", params={"signer": parties.platform.public_key})

    assert first.status_code == 500
    assert NOT_COMPLETE in body_of(first)["message"]
    assert "resultMetaXdr" in body_of(first)["message"]
    assert state_after_first == "pending"
    assert NOT_COMPLETE in body_of(resent)["message"]
    assert tw.sim.transaction(tx_hash(xdr))["state"] == "applied"
    assert tw.sim.applied_count(contract_id, "fund_escrow") == 1
    assert tw.sim.submissions(tx_hash(xdr)) == 2


def test_the_wrong_network_fault_fails_a_good_signature(tw: TwHttp, parties: Parties) -> None:
    xdr = tw.build("/deployer/single-release", single_release_body(parties, tw.sim))
    tw.sim.add_fault("wrong_network", path="send-transaction")

    response = tw.send(tw.sign(xdr, parties.platform))
    retried = tw.send(tw.sign(xdr, parties.platform))

    assert body_of(response)["message"] == "Transaction failed: tx_bad_auth"
    assert retried.status_code == 201


def test_duplicate_submissions_can_be_errors(tw: TwHttp, parties: Parties) -> None:
    tw.sim.configure(duplicate_submission="error")
    signed = tw.sign(
        tw.build("/deployer/single-release", single_release_body(parties, tw.sim)), parties.platform
    )

    first, second = tw.send(signed), tw.send(signed)

    assert first.status_code == 201
    assert body_of(second) == {"status": "FAILED", "message": "Transaction failed: tx_bad_seq"}


def test_problem_details_error_bodies(tw: TwHttp, parties: Parties) -> None:
    tw.sim.configure(error_style="problem")

    unauthorized = tw.post("/deployer/single-release", {}, key=None)
    rejected = tw.post(
        f"{SR}/fund-escrow",
        {
            "contractId": StrKey.encode_contract(bytes(32)),
            "signer": parties.buyer.public_key,
            "amount": 1,
        },
    )

    assert unauthorized.headers["content-type"] == "application/problem+json"
    assert body_of(unauthorized)["code"] == "AUTH_CREDENTIAL_MISSING"
    problem = body_of(rejected)
    assert problem["status"] == 400
    assert problem["code"] == "ESCROW_NOT_FOUND"
    assert problem["detail"] == "Escrow not found"
    assert problem["title"] == "Bad Request"
    assert problem["instance"] == f"{SR}/fund-escrow"


# --- Control API and mounting ---------------------------------------------------------------------


def test_the_control_api_over_http(tw: TwHttp, parties: Parties) -> None:
    someone = Keypair.random().public_key
    ctl = "/__sandbox"

    created = tw.post(f"{ctl}/accounts", {"address": someone, "usdc": "1.5"}, key=None)
    minted = tw.post(f"{ctl}/mint", {"address": someone, "amount": "0.0000001"}, key=None)
    fault = tw.post(f"{ctl}/faults", {"kind": "server_error", "status": 502, "times": 1}, key=None)
    faulted = tw.get("/helper/get-escrows-by-signer", params={"signer": someone})
    advanced = tw.post(f"{ctl}/clock/advance", {"seconds": 10}, key=None)
    info = body_of(tw.get(f"{ctl}/info", key=None))
    events = body_of(tw.get(f"{ctl}/events", key=None))
    stats = body_of(tw.get(f"{ctl}/stats", key=None))
    missing = tw.get(f"{ctl}/escrows/{StrKey.encode_contract(bytes(32))}", key=None)

    assert created.status_code == 201
    assert body_of(minted)["usdcStroops"] == 15_000_001
    assert body_of(fault)["kind"] == "server_error"
    assert faulted.status_code == 502
    assert body_of(advanced)["now"] == tw.sim.now()
    assert info["usdcIssuer"] == tw.sim.usdc_issuer
    assert {"account.created", "account.minted", "fault", "clock.advanced"} <= {
        e["type"] for e in events
    }
    assert stats["requests"] == 1
    assert missing.status_code == 404
    assert tw.post(f"{ctl}/faults", {"kind": "nonsense"}, key=None).status_code == 400
    assert tw.post(f"{ctl}/reset", {"seed": 9}, key=None).status_code == 200
    assert tw.sim.account(someone) is None


def test_it_mounts_under_a_prefix_of_a_shared_server(
    sim: TrustlessWorkSimulator, parties: Parties
) -> None:
    app = DispatcherMiddleware(Response("not here", status=404), {"/trustless-work": sim})

    with SandboxServer(app) as server:
        tw = TwHttp(server.url + "/trustless-work", sim)
        contract_id = deploy(tw, parties)
        outside = requests.get(server.url + "/helper/get-escrows-by-signer", timeout=10)

    assert sim.escrow_state(contract_id) is not None
    assert outside.status_code == 404


def test_the_usdc_issuer_can_be_the_configured_one(parties: Parties) -> None:
    issuer = Keypair.random().public_key
    sim = TrustlessWorkSimulator(usdc_issuer=issuer)
    for keypair in (parties.platform, parties.seller, parties.resolver):
        sim.create_account(keypair.public_key)

    with SandboxServer(sim) as server:
        tw = TwHttp(server.url, sim)
        accepted = tw.post("/deployer/single-release", single_release_body(parties, sim))
        other = single_release_body(parties, sim, trustline={"address": parties.buyer.public_key})
        refused = tw.post("/deployer/single-release", other)

    assert sim.usdc_issuer == issuer
    assert sim.usdc_contract == Asset("USDC", issuer).contract_id(TESTNET)
    assert accepted.status_code == 201
    assert refused.status_code == 400
    assert "Unsupported trustline" in body_of(refused)["message"]


def test_absurd_amounts_and_internal_errors_answer_json(
    tw: TwHttp, parties: Parties, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    huge = tw.post(
        f"{SR}/fund-escrow",
        {
            "contractId": StrKey.encode_contract(bytes(32)),
            "signer": parties.buyer.public_key,
            "amount": Decimal("1e40"),
        },
    )

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulator bug")

    monkeypatch.setattr(tw.sim, "_api_by_signer", broken)
    failed = tw.get("/helper/get-escrows-by-signer", params={"signer": parties.buyer.public_key})

    assert body_of(huge)["message"] == ["amount is too large"]
    assert failed.status_code == 500
    assert body_of(failed)["message"] == "Internal server error"
    assert "simulator bug" in caplog.text
