"""The Trustless Work client: every call and error shape with `responses`, then against the
simulator over HTTP (full flows, and the exactly-once cases: a timeout after the funding
applied, and "not complete yet" for a transaction that lands)."""

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses
from stellar_sdk import Keypair, Network, StrKey, TransactionEnvelope, scval
from stellar_sdk.exceptions import BadSignatureError

from orchestrator.models import Marketplace, MarketplaceUser
from providers import json_numbers
from providers.clients.errors import (
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.clients.trustless_work import TrustlessWorkClient, _Bucket
from providers.clients.trustless_work_types import (
    MULTI,
    DeployRequest,
    Distribution,
    MilestoneSpec,
    Roles,
    TxResult,
)
from providers.models import ProviderCall, StellarKey
from providers.sandbox import tw_xdr
from providers.sandbox.trustless_work import DEFAULT_API_KEY
from providers.stellar.keys import stellar_key_for, stellar_key_for_user
from tests.providers.tw_support import (  # noqa: F401 - fixtures
    TESTNET,
    TwHttp,
    sim,
    tw,
)

pytestmark = pytest.mark.django_db

BASE = "https://tw.example"
KEY = "id.secret-api-key"
CONTRACT = StrKey.encode_contract(b"\x07" * 32)
SEND = f"{BASE}/helper/send-transaction"
GET_ESCROWS = f"{BASE}/helper/get-escrow-by-contract-ids"
UPDATE = f"{BASE}/indexer/update-from-txHash"
SR = f"{BASE}/escrow/single-release"
MR = f"{BASE}/escrow/multi-release"


@pytest.fixture
def keys(
    marketplace: Marketplace, make_user: Callable[..., MarketplaceUser]
) -> dict[str, StellarKey]:
    return {
        "platform": stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM),
        "resolver": stellar_key_for(marketplace=marketplace, role=StellarKey.Role.DISPUTE_RESOLVER),
        "buyer": stellar_key_for_user(user=make_user(marketplace, "BUYER")),
        "seller": stellar_key_for_user(user=make_user(marketplace, "SELLER")),
    }


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def client(slept: list[float]) -> TrustlessWorkClient:
    return TrustlessWorkClient(
        base_url=BASE,
        api_key=KEY,
        network_passphrase=TESTNET,
        rate_per_minute=10_000,
        confirm_delays=(3, 6, 9),
        sleep=slept.append,
    )


def one_shot_client() -> TrustlessWorkClient:
    """A client that tries each request once and never sleeps."""
    return TrustlessWorkClient(
        base_url=BASE,
        api_key=KEY,
        network_passphrase=TESTNET,
        attempts=1,
        rate_per_minute=10_000,
        sleep=lambda s: None,
    )


def unsigned(source: str, function: str, args: list[Any], contract: str = CONTRACT) -> str:
    return tw_xdr.build_envelope(
        source=source,
        current_sequence=100,
        contract_id=contract,
        function=function,
        args=args,
        min_time=0,
        max_time=2**40,
        network_passphrase=TESTNET,
    ).to_xdr()


def built(xdr: str) -> dict[str, Any]:
    return {"status": "SUCCESS", "unsignedTransaction": xdr}


def escrow_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contractId": CONTRACT,
        "type": "single-release",
        "signer": "G" + "A" * 55,
        "engagementId": "ord_1",
        "title": "t",
        "description": "d",
        "roles": {
            "approver": "GA",
            "serviceProvider": "GB",
            "platformAddress": "GC",
            "releaseSigner": "GC",
            "disputeResolver": "GD",
            "receiver": "GB",
        },
        "amount": Decimal("12.5"),
        "platformFee": Decimal("2.5"),
        "balance": 0,
        "milestones": [{"description": "m", "status": "", "evidence": "", "approved": False}],
        "flags": {"disputed": False, "released": False, "resolved": False},
        "trustline": {"address": "GUSDC", "name": "USDC"},
        "isActive": True,
    }
    body.update(over)
    return body


def add_json(
    mock: responses.RequestsMock, method: str, url: str, body: Any, status: int = 200, **kw: Any
) -> None:
    mock.add(
        method,
        url,
        body=json_numbers.dumps(body),
        status=status,
        content_type="application/json",
        **kw,
    )


def url_of(mock: responses.RequestsMock, index: int) -> str:
    return str(mock.calls[index].request.url)


def body_sent(call: Any) -> bytes:
    body = call.request.body
    return body if isinstance(body, bytes) else str(body or "").encode()


def sent_bodies(mock: responses.RequestsMock, url: str) -> list[Any]:
    return [
        json_numbers.loads(body_sent(c))
        for c in mock.calls
        if str(c.request.url).split("?")[0] == url
    ]


def signed_by(xdr: str, public_key: str) -> bool:
    envelope = TransactionEnvelope.from_xdr(xdr, TESTNET)
    keypair = Keypair.from_public_key(public_key)
    for decorated in envelope.signatures:
        try:
            keypair.verify(envelope.hash(), decorated.signature)
        except BadSignatureError:
            continue
        return True
    return False


# --- Reads ----------------------------------------------------------------------------------------


def test_reads_send_the_key_and_read_amounts_exactly(
    client: TrustlessWorkClient, mock: responses.RequestsMock
) -> None:
    add_json(
        mock,
        "GET",
        GET_ESCROWS,
        [escrow_body(balance=Decimal("0.0000001"), amount=Decimal("100.5"))],
    )

    escrow = client.get_escrow(CONTRACT, signer="GSIGNER")

    assert mock.calls[0].request.headers["x-api-key"] == KEY
    assert "contractIds%5B%5D=" + CONTRACT in url_of(mock, 0)
    assert "validateOnChain=true" in url_of(mock, 0)
    assert escrow.balance == Decimal("0.0000001")
    assert escrow.amount == Decimal("100.5")
    assert escrow.total == Decimal("100.5")
    assert escrow.roles.service_provider == "GB"


def test_a_missing_escrow_is_not_found(
    client: TrustlessWorkClient, mock: responses.RequestsMock
) -> None:
    add_json(mock, "GET", GET_ESCROWS, [])

    with pytest.raises(ProviderNotFoundError) as info:
        client.get_escrow(CONTRACT, signer="GSIGNER")

    assert info.value.retryable  # may just not be indexed yet


def test_listing_balances_and_indexer_calls(
    client: TrustlessWorkClient, mock: responses.RequestsMock
) -> None:
    multi = escrow_body(
        type=MULTI,
        milestones=[
            {
                "description": "a",
                "amount": Decimal(60),
                "receiver": "GX",
                "status": "",
                "evidence": "",
                "flags": {"approved": True, "disputed": False, "released": True, "resolved": False},
            },
            {
                "description": "b",
                "amount": Decimal("40.25"),
                "receiver": "GY",
                "status": "",
                "evidence": "",
                "flags": {
                    "approved": False,
                    "disputed": False,
                    "released": False,
                    "resolved": False,
                },
            },
        ],
    )
    del multi["amount"]
    add_json(mock, "GET", f"{BASE}/helper/get-escrows-by-signer", [multi])
    add_json(mock, "GET", f"{BASE}/helper/get-escrows-by-role", [])
    add_json(
        mock,
        "GET",
        f"{MR}/get-multiple-escrow-balance",
        [{"address": CONTRACT, "balance": Decimal("40.25")}],
    )
    add_json(mock, "POST", UPDATE, {"status": "SUCCESS", "message": "updated"}, status=201)

    by_signer = client.get_escrows_by_signer("GSIGNER", engagementId="ord_1", isActive=True)
    by_role = client.get_escrows_by_role("receiver", "GX")
    balances = client.get_balances([CONTRACT], signer="GSIGNER", escrow_type=MULTI)
    message = client.update_from_tx_hash("ab" * 32)

    assert by_signer[0].total == Decimal("100.25")
    assert by_signer[0].milestones[0].released
    assert by_signer[0].milestones[0].approved
    assert "engagementId=ord_1" in url_of(mock, 0)
    assert "isActive=true" in url_of(mock, 0)
    assert "role=receiver" in url_of(mock, 1)
    assert by_role == []
    assert balances[0].balance == Decimal("40.25")
    assert message == "updated"
    assert sent_bodies(mock, UPDATE) == [{"txHash": "ab" * 32}]


# --- Writes ---------------------------------------------------------------------------------------


def fund_12_50(
    client: TrustlessWorkClient, mock: responses.RequestsMock, buyer: StellarKey
) -> TxResult:
    """Fund CONTRACT with 12.50 from `buyer`, Trustless Work answering every step."""
    add_json(mock, "GET", GET_ESCROWS, [escrow_body()])
    xdr = unsigned(
        buyer.public_key,
        "fund_escrow",
        [scval.to_address(buyer.public_key), scval.to_string("x"), scval.to_int128(125_000_000)],
    )
    add_json(mock, "POST", f"{SR}/fund-escrow", built(xdr), status=201)
    add_json(mock, "POST", SEND, {"status": "SUCCESS", "message": "sent"}, status=201)
    return client.fund_escrow(contract_id=CONTRACT, funder=buyer, amount=Decimal("12.50"))


def test_fund_sends_an_exact_number_and_the_funders_signature(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    buyer = keys["buyer"]
    result = fund_12_50(client, mock, buyer)

    build_call = next(c for c in mock.calls if c.request.url == f"{SR}/fund-escrow")
    assert b'"amount":12.5,' in body_sent(build_call) or body_sent(build_call).endswith(
        b'"amount":12.5}'
    )
    assert sent_bodies(mock, f"{SR}/fund-escrow") == [
        {"contractId": CONTRACT, "signer": buyer.public_key, "amount": Decimal("12.5")}
    ]
    signed = sent_bodies(mock, SEND)[0]["signedXdr"]
    assert signed_by(signed, buyer.public_key)
    assert result.tx_hash == TransactionEnvelope.from_xdr(signed, TESTNET).hash_hex()
    assert not result.confirmed_by_lookup


def test_amounts_are_refused_before_anything_is_sent(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        client.fund_escrow(contract_id=CONTRACT, funder=keys["buyer"], amount=12.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 7 decimals"):
        client.fund_escrow(contract_id=CONTRACT, funder=keys["buyer"], amount=Decimal("1.00000001"))

    assert len(mock.calls) == 0


def test_nothing_is_sent_when_the_chain_already_shows_the_effect(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    done = escrow_body(
        balance=Decimal("12.5"),
        flags={"disputed": False, "released": True, "resolved": False},
        milestones=[{"description": "m", "status": "done", "evidence": "", "approved": True}],
    )
    add_json(mock, "GET", GET_ESCROWS, [done])

    results = [
        client.fund_escrow(contract_id=CONTRACT, funder=keys["buyer"], amount=Decimal("12.5")),
        client.approve_milestone(contract_id=CONTRACT, milestone_index=0, approver=keys["buyer"]),
        client.release_funds(contract_id=CONTRACT, release_signer=keys["platform"]),
        client.change_milestone_status(
            contract_id=CONTRACT,
            milestone_index=0,
            new_status="done",
            service_provider=keys["seller"],
        ),
    ]

    assert all(r.already_done and r.tx_hash == "" for r in results)
    assert {c.request.method for c in mock.calls} == {"GET"}


def _write_cases(
    keys: dict[str, StellarKey],
) -> list[
    tuple[
        str, Callable[[TrustlessWorkClient], Any], str, str, dict[str, Any], StellarKey, list[Any]
    ]
]:
    p, b, s, r = keys["platform"], keys["buyer"], keys["seller"], keys["resolver"]
    a = scval.to_address
    dist = [
        Distribution(address=b.public_key, amount=Decimal(60)),
        Distribution(address=s.public_key, amount=Decimal("40.5")),
    ]
    dist_map = scval.to_map(
        {
            a(b.public_key): scval.to_int128(600_000_000),
            a(s.public_key): scval.to_int128(405_000_000),
        }
    )
    dist_json = [
        {"address": b.public_key, "amount": Decimal(60)},
        {"address": s.public_key, "amount": Decimal("40.5")},
    ]
    return [
        (
            "status",
            lambda c: c.change_milestone_status(
                contract_id=CONTRACT,
                milestone_index=1,
                new_status="completed",
                new_evidence="url",
                service_provider=s,
                escrow_type=MULTI,
            ),
            f"{MR}/change-milestone-status",
            "change_milestone_status",
            {
                "contractId": CONTRACT,
                "milestoneIndex": "1",
                "newStatus": "completed",
                "serviceProvider": s.public_key,
                "newEvidence": "url",
            },
            s,
            [
                scval.to_int128(1),
                scval.to_string("completed"),
                scval.to_string("url"),
                a(s.public_key),
            ],
        ),
        (
            "approve",
            lambda c: c.approve_milestone(contract_id=CONTRACT, milestone_index=0, approver=b),
            f"{SR}/approve-milestone",
            "approve_milestone",
            {"contractId": CONTRACT, "milestoneIndex": "0", "approver": b.public_key},
            b,
            [scval.to_int128(0), a(b.public_key)],
        ),
        (
            "release",
            lambda c: c.release_funds(contract_id=CONTRACT, release_signer=p),
            f"{SR}/release-funds",
            "release_funds",
            {"contractId": CONTRACT, "releaseSigner": p.public_key},
            p,
            [a(p.public_key), a(p.public_key)],
        ),
        (
            "release milestone",
            lambda c: c.release_milestone_funds(
                contract_id=CONTRACT, milestone_index=1, release_signer=p
            ),
            f"{MR}/release-milestone-funds",
            "release_milestone_funds",
            {"contractId": CONTRACT, "releaseSigner": p.public_key, "milestoneIndex": "1"},
            p,
            [a(p.public_key), a(p.public_key), scval.to_uint32(1)],
        ),
        (
            "dispute",
            lambda c: c.dispute_escrow(contract_id=CONTRACT, signer=b),
            f"{SR}/dispute-escrow",
            "dispute_escrow",
            {"contractId": CONTRACT, "signer": b.public_key},
            b,
            [a(b.public_key)],
        ),
        (
            "dispute milestone",
            lambda c: c.dispute_milestone(contract_id=CONTRACT, milestone_index=1, signer=s),
            f"{MR}/dispute-milestone",
            "dispute_milestone",
            {"contractId": CONTRACT, "signer": s.public_key, "milestoneIndex": "1"},
            s,
            [scval.to_uint32(1), a(s.public_key)],
        ),
        (
            "resolve",
            lambda c: c.resolve_dispute(
                contract_id=CONTRACT, dispute_resolver=r, distributions=dist
            ),
            f"{SR}/resolve-dispute",
            "resolve_dispute",
            {"contractId": CONTRACT, "disputeResolver": r.public_key, "distributions": dist_json},
            r,
            [a(r.public_key), a(p.public_key), dist_map],
        ),
        (
            "resolve milestone",
            lambda c: c.resolve_milestone_dispute(
                contract_id=CONTRACT, milestone_index=1, dispute_resolver=r, distributions=dist
            ),
            f"{MR}/resolve-milestone-dispute",
            "resolve_milestone_dispute",
            {
                "contractId": CONTRACT,
                "disputeResolver": r.public_key,
                "distributions": dist_json,
                "milestoneIndex": "1",
            },
            r,
            [a(r.public_key), scval.to_uint32(1), a(p.public_key), dist_map],
        ),
        (
            "withdraw",
            lambda c: c.withdraw_remaining_funds(
                contract_id=CONTRACT, dispute_resolver=r, distributions=dist
            ),
            f"{MR}/withdraw-remaining-funds",
            "withdraw_remaining_funds",
            {"contractId": CONTRACT, "disputeResolver": r.public_key, "distributions": dist_json},
            r,
            [a(r.public_key), a(p.public_key), dist_map],
        ),
    ]


@pytest.mark.parametrize("case", range(9))
def test_each_write_builds_signs_and_submits(
    client: TrustlessWorkClient,
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    case: int,
) -> None:
    name, call, url, function, body, signer, args = _write_cases(keys)[case]
    two_milestones = [
        {
            "description": m,
            "amount": Decimal(50),
            "receiver": "GX",
            "status": "",
            "evidence": "",
            "flags": {"approved": False, "disputed": False, "released": False, "resolved": False},
        }
        for m in ("a", "b")
    ]
    add_json(
        mock, "GET", GET_ESCROWS, [escrow_body(milestones=two_milestones, balance=Decimal(200))]
    )
    add_json(mock, "POST", url, built(unsigned(signer.public_key, function, args)), status=201)
    add_json(mock, "POST", SEND, {"status": "SUCCESS", "message": "sent"}, status=201)

    result = call(client)

    assert sent_bodies(mock, url) == [body], name
    assert signed_by(sent_bodies(mock, SEND)[0]["signedXdr"], signer.public_key)
    assert result.tx_hash
    assert not result.already_done


def test_deploy_sends_the_escrow_and_returns_the_contract(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    p = keys["platform"]
    request = DeployRequest(
        engagement_id="ord_9",
        title="Logo",
        description="A logo",
        roles=Roles(
            approver="GA",
            service_provider="GB",
            platform_address=p.public_key,
            release_signer=p.public_key,
            dispute_resolver="GD",
            receiver="GB",
        ),
        platform_fee=Decimal("2.50"),
        milestones=[MilestoneSpec(description="Deliver")],
        trustline_address="GUSDC",
        amount=Decimal("100.0000000"),
    )
    add_json(mock, "GET", f"{BASE}/helper/get-escrows-by-signer", [])
    deploy_args = [
        scval.to_address(p.public_key),
        scval.to_bytes(b"w" * 32),
        scval.to_bytes(b"s" * 32),
        scval.to_symbol("initialize_escrow"),
        scval.to_vec([]),
        scval.to_vec([]),
    ]
    factory = StrKey.encode_contract(b"\x09" * 32)
    add_json(
        mock,
        "POST",
        f"{BASE}/deployer/single-release",
        built(unsigned(p.public_key, "deploy", deploy_args, factory)),
        status=201,
    )
    add_json(
        mock,
        "POST",
        SEND,
        {
            "status": "SUCCESS",
            "message": "ok",
            "contractId": CONTRACT,
            "escrow": escrow_body(engagementId="ord_9"),
        },
        status=201,
    )
    add_json(mock, "POST", UPDATE, {"status": "SUCCESS", "message": "updated"}, status=201)

    result = client.deploy_single_release(request, deployer=p)

    assert sent_bodies(mock, f"{BASE}/deployer/single-release") == [
        {
            "signer": p.public_key,
            "engagementId": "ord_9",
            "title": "Logo",
            "description": "A logo",
            "roles": {
                "approver": "GA",
                "serviceProvider": "GB",
                "platformAddress": p.public_key,
                "releaseSigner": p.public_key,
                "disputeResolver": "GD",
                "receiver": "GB",
            },
            "platformFee": Decimal("2.5"),
            "milestones": [{"description": "Deliver"}],
            "trustline": {"address": "GUSDC", "symbol": "USDC"},
            "amount": Decimal(100),
        }
    ]
    assert result.contract_id == CONTRACT
    assert result.escrow is not None
    assert result.escrow.engagement_id == "ord_9"
    assert sent_bodies(mock, UPDATE) == [{"txHash": result.tx_hash}]


def test_an_existing_engagement_is_not_deployed_again(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    add_json(
        mock, "GET", f"{BASE}/helper/get-escrows-by-signer", [escrow_body(engagementId="ord_9")]
    )
    request = DeployRequest(
        engagement_id="ord_9",
        title="t",
        description="d",
        roles=Roles(
            approver="GA",
            service_provider="GB",
            platform_address="GC",
            release_signer="GC",
            dispute_resolver="GD",
            receiver="GB",
        ),
        platform_fee=Decimal(0),
        milestones=[MilestoneSpec(description="m")],
        trustline_address="GUSDC",
        amount=Decimal(1),
    )

    result = client.deploy_single_release(request, deployer=keys["platform"])

    assert result.already_done
    assert result.contract_id == CONTRACT
    assert len(mock.calls) == 1


@pytest.mark.parametrize(
    ("xdr_of", "problem"),
    [
        (lambda k: unsigned(k["seller"].public_key, "fund_escrow", []), "source"),
        (lambda k: unsigned(k["buyer"].public_key, "release_funds", []), "calls release_funds"),
        (
            lambda k: unsigned(
                k["buyer"].public_key, "fund_escrow", [], StrKey.encode_contract(b"\x01" * 32)
            ),
            "calls contract",
        ),
        (
            lambda k: unsigned(
                k["buyer"].public_key,
                "fund_escrow",
                [
                    scval.to_address(k["buyer"].public_key),
                    scval.to_string("x"),
                    scval.to_int128(999_000_000),
                ],
            ),
            "arguments that differ",
        ),
        (lambda k: "AAAA", "not a transaction envelope"),
    ],
)
def test_it_refuses_to_sign_what_it_did_not_ask_for(
    client: TrustlessWorkClient,
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    xdr_of: Callable[[dict[str, StellarKey]], str],
    problem: str,
) -> None:
    add_json(mock, "GET", GET_ESCROWS, [escrow_body()])
    add_json(mock, "POST", f"{SR}/fund-escrow", built(xdr_of(keys)), status=201)

    with pytest.raises(ProviderError, match=problem) as info:
        client.fund_escrow(contract_id=CONTRACT, funder=keys["buyer"], amount=Decimal("12.5"))

    assert "not signed" in info.value.message
    assert not info.value.retryable
    assert sent_bodies(mock, SEND) == []


# --- Error shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "message", "reason"),
    [
        (
            400,
            {"message": "The escrow must be completed to release earnings", "statusCode": 400},
            ProviderRejectedError,
            "The escrow must be completed to release earnings",
            "",
        ),
        (
            400,
            {
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "code": "ESCROW_NOT_FOUND",
                "detail": "Escrow not found",
            },
            ProviderNotFoundError,
            "Escrow not found",
            "ESCROW_NOT_FOUND",
        ),
        (
            400,
            {"message": ["contractId should not be empty", "signer should not be empty"]},
            ProviderRejectedError,
            "contractId should not be empty; signer should not be empty",
            "",
        ),
        (
            401,
            {"code": "AUTH_INVALID_CREDENTIAL", "detail": "Invalid API key"},
            ProviderRejectedError,
            "refused the API key (401): Invalid API key",
            "AUTH_INVALID_CREDENTIAL",
        ),
        (404, {"message": "Cannot POST /x"}, ProviderNotFoundError, "Cannot POST /x", ""),
        (
            429,
            {"message": "ThrottlerException: Too Many Requests"},
            ProviderRateLimitedError,
            "Too Many Requests",
            "",
        ),
        (
            500,
            {"message": "Internal server error"},
            ProviderUnavailableError,
            "(500): Internal server error",
            "",
        ),
        (502, "<html>bad gateway</html>", ProviderUnavailableError, "bad gateway", ""),
    ],
)
def test_error_bodies_map_to_provider_errors(
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    status: int,
    body: Any,
    error: type[ProviderError],
    message: str,
    reason: str,
) -> None:
    client = one_shot_client()
    add_json(
        mock,
        "GET",
        GET_ESCROWS,
        [
            escrow_body(
                milestones=[{"description": "m", "status": "x", "evidence": "", "approved": True}],
                balance=Decimal("12.5"),
            )
        ],
    )
    text = body if isinstance(body, str) else json_numbers.dumps(body)
    mock.add("POST", f"{SR}/release-funds", body=text, status=status)

    with pytest.raises(error) as info:
        client.release_funds(contract_id=CONTRACT, release_signer=keys["platform"])

    assert type(info.value) is error
    assert message in info.value.message
    assert info.value.reason_code == reason
    assert info.value.provider == "trustless_work"
    assert info.value.upstream_status == status


@pytest.mark.parametrize(
    ("raised", "error", "outcome_unknown"),
    [
        (requests.ReadTimeout("slow"), ProviderTimeoutError, True),
        (requests.ConnectTimeout("no route"), ProviderTimeoutError, False),
        (requests.ConnectionError("reset"), ProviderUnavailableError, True),
    ],
)
def test_transport_failures_map_to_provider_errors(
    mock: responses.RequestsMock,
    raised: Exception,
    error: type[ProviderError],
    outcome_unknown: bool,
) -> None:
    client = one_shot_client()
    mock.add("GET", GET_ESCROWS, body=raised)

    with pytest.raises(error) as info:
        client.get_escrows([CONTRACT], signer="G")

    assert info.value.outcome_unknown is outcome_unknown
    assert info.value.retryable


def test_the_api_key_never_appears_in_an_error(mock: responses.RequestsMock) -> None:
    client = one_shot_client()
    add_json(mock, "GET", GET_ESCROWS, {"message": f"bad key {KEY}"}, status=400)

    with pytest.raises(ProviderRejectedError) as info:
        client.get_escrows([CONTRACT], signer="G")

    assert KEY not in str(info.value)
    assert KEY not in repr(info.value.details)
    assert "[redacted]" in info.value.message
    assert KEY not in repr(client)


def test_reads_and_builds_are_retried_with_backoff(
    client: TrustlessWorkClient, mock: responses.RequestsMock, slept: list[float]
) -> None:
    add_json(mock, "GET", GET_ESCROWS, {"message": "down"}, status=503)
    add_json(
        mock, "GET", GET_ESCROWS, {"message": "slow down"}, status=429, headers={"Retry-After": "4"}
    )
    add_json(mock, "GET", GET_ESCROWS, [escrow_body()])

    escrow = client.get_escrow(CONTRACT, signer="G")

    assert escrow.contract_id == CONTRACT
    assert slept == [0.5, 4.0]


@pytest.mark.parametrize(("http_status", "retryable"), [(200, False), (400, True)])
def test_a_failed_status_is_a_failure_and_is_not_resent(
    client: TrustlessWorkClient,
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    http_status: int,
    retryable: bool,
) -> None:
    p = keys["platform"]
    add_json(
        mock,
        "GET",
        GET_ESCROWS,
        [
            escrow_body(
                milestones=[{"description": "m", "status": "x", "evidence": "", "approved": True}],
                balance=Decimal("12.5"),
            )
        ],
    )
    add_json(
        mock,
        "POST",
        f"{SR}/release-funds",
        built(unsigned(p.public_key, "release_funds", [])),
        status=201,
    )
    code = "tx_bad_auth" if http_status == 200 else "tx_bad_seq"
    add_json(
        mock,
        "POST",
        SEND,
        {"status": "FAILED", "message": f"Transaction failed: {code}"},
        status=http_status,
    )

    with pytest.raises(ProviderRejectedError) as info:
        client.release_funds(contract_id=CONTRACT, release_signer=p)

    assert info.value.reason_code == code
    assert info.value.retryable is retryable
    assert len(sent_bodies(mock, SEND)) == 1


def test_a_429_on_submit_is_sent_again_after_retry_after(
    client: TrustlessWorkClient,
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    slept: list[float],
) -> None:
    p = keys["platform"]
    add_json(
        mock,
        "GET",
        GET_ESCROWS,
        [
            escrow_body(
                milestones=[{"description": "m", "status": "x", "evidence": "", "approved": True}],
                balance=Decimal("12.5"),
            )
        ],
    )
    add_json(
        mock,
        "POST",
        f"{SR}/release-funds",
        built(unsigned(p.public_key, "release_funds", [])),
        status=201,
    )
    add_json(
        mock,
        "POST",
        SEND,
        {"message": "ThrottlerException"},
        status=429,
        headers={"Retry-After": "7"},
    )
    add_json(mock, "POST", SEND, {"status": "SUCCESS", "message": "ok"}, status=201)

    result = client.release_funds(contract_id=CONTRACT, release_signer=p)

    assert result.tx_hash
    assert slept == [7.0]
    first, second = sent_bodies(mock, SEND)
    assert first == second


# --- Uncertain submissions (responses) ------------------------------------------------------------


def _release_setup(mock: responses.RequestsMock, p: StellarKey, released_after: bool) -> None:
    approved = [{"description": "m", "status": "x", "evidence": "", "approved": True}]
    add_json(mock, "GET", GET_ESCROWS, [escrow_body(milestones=approved, balance=Decimal("12.5"))])
    flags = {"disputed": False, "released": released_after, "resolved": False}
    add_json(mock, "GET", GET_ESCROWS, [escrow_body(milestones=approved, flags=flags)])
    add_json(
        mock,
        "POST",
        f"{SR}/release-funds",
        built(unsigned(p.public_key, "release_funds", [])),
        status=201,
    )


def test_a_lost_answer_is_confirmed_by_a_read_and_not_resent(
    client: TrustlessWorkClient,
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    slept: list[float],
) -> None:
    p = keys["platform"]
    _release_setup(mock, p, released_after=True)
    mock.add("POST", SEND, body=requests.ReadTimeout("lost"))
    add_json(mock, "POST", UPDATE, {"message": "Transaction not found"}, status=404)

    result = client.release_funds(contract_id=CONTRACT, release_signer=p)

    assert result.confirmed_by_lookup
    assert result.escrow is not None
    assert result.escrow.released
    assert len(sent_bodies(mock, SEND)) == 1
    assert slept == [3]


def test_an_unseen_submission_resends_the_same_envelope(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    p = keys["platform"]
    _release_setup(mock, p, released_after=False)
    add_json(
        mock,
        "POST",
        SEND,
        {"message": "resultMetaXdr is missing: the transaction may not be complete yet"},
        status=500,
    )
    add_json(mock, "POST", SEND, {"status": "SUCCESS", "message": "ok"}, status=201)
    add_json(mock, "POST", UPDATE, {"message": "Transaction not found"}, status=404)

    result = client.release_funds(contract_id=CONTRACT, release_signer=p)

    first, second = sent_bodies(mock, SEND)
    assert first == second  # same hash, same sequence: it can land only once
    assert result.tx_hash == TransactionEnvelope.from_xdr(first["signedXdr"], TESTNET).hash_hex()
    assert not result.confirmed_by_lookup


def test_an_unconfirmable_submission_is_a_timeout_with_unknown_outcome(
    client: TrustlessWorkClient,
    mock: responses.RequestsMock,
    keys: dict[str, StellarKey],
    slept: list[float],
) -> None:
    p = keys["platform"]
    _release_setup(mock, p, released_after=False)
    mock.add("POST", SEND, body=requests.ReadTimeout("lost"))
    add_json(mock, "POST", UPDATE, {"message": "Transaction not found"}, status=404)

    with pytest.raises(ProviderTimeoutError) as info:
        client.release_funds(contract_id=CONTRACT, release_signer=p)

    assert info.value.outcome_unknown
    assert info.value.details["tx_hash"]
    assert slept == [3, 6, 9]
    assert len(sent_bodies(mock, SEND)) == 4  # the first and one resend per look


def test_an_expired_unseen_submission_is_safe_to_rebuild(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    p = keys["platform"]
    _release_setup(mock, p, released_after=False)
    mock.add("POST", SEND, body=requests.ReadTimeout("lost"))
    add_json(
        mock,
        "POST",
        SEND,
        {"status": "FAILED", "message": "Transaction failed: tx_too_late"},
        status=400,
    )
    add_json(mock, "POST", UPDATE, {"message": "Transaction not found"}, status=404)

    with pytest.raises(ProviderUnavailableError, match="safe to build it again") as info:
        client.release_funds(contract_id=CONTRACT, release_signer=p)

    assert not info.value.outcome_unknown


# --- Client-side rate limit -----------------------------------------------------------------------


def test_the_bucket_allows_fifty_a_minute_then_waits_or_refuses() -> None:
    now = [0.0]
    waited: list[float] = []
    bucket = _Bucket(50, clock=lambda: now[0], sleep=waited.append)

    for _ in range(50):
        bucket.acquire(max_wait=0)
    bucket.acquire(max_wait=5)
    with pytest.raises(ProviderRateLimitedError) as info:
        bucket.acquire(max_wait=1)
    now[0] += 60
    bucket.acquire(max_wait=0)

    assert waited == [pytest.approx(1.2)]
    assert info.value.retry_after == pytest.approx(2.4)


def test_the_client_refuses_beyond_its_limit_without_calling(mock: responses.RequestsMock) -> None:
    client = TrustlessWorkClient(
        base_url=BASE,
        api_key=KEY,
        network_passphrase=TESTNET,
        rate_per_minute=2,
        rate_limit_max_wait=0,
        attempts=1,
        sleep=lambda s: None,
        clock=lambda: 0.0,
    )
    add_json(mock, "GET", GET_ESCROWS, [])

    client.get_escrows([CONTRACT], signer="G")
    client.get_escrows([CONTRACT], signer="G")
    with pytest.raises(ProviderRateLimitedError):
        client.get_escrows([CONTRACT], signer="G")

    assert len(mock.calls) == 2


# --- Against the simulator ------------------------------------------------------------------------


@pytest.fixture
def sim_client(tw: TwHttp) -> TrustlessWorkClient:
    return TrustlessWorkClient(
        base_url=tw.base_url,
        api_key=DEFAULT_API_KEY,
        network_passphrase=TESTNET,
        read_timeout=5,
        rate_per_minute=10_000,
        confirm_delays=(0, 0, 0),
        sleep=lambda s: None,
    )


@pytest.fixture
def funded(tw: TwHttp, keys: dict[str, StellarKey]) -> dict[str, StellarKey]:
    for name, key in keys.items():
        tw.sim.create_account(key.public_key, usdc="1000" if name == "buyer" else 0)
    return keys


def _request(tw: TwHttp, k: dict[str, StellarKey], **over: Any) -> DeployRequest:
    fields: dict[str, Any] = {
        "engagement_id": "ord_sim_1",
        "title": "Logo",
        "description": "A logo",
        "roles": Roles(
            approver=k["buyer"].public_key,
            service_provider=k["seller"].public_key,
            platform_address=k["platform"].public_key,
            release_signer=k["platform"].public_key,
            dispute_resolver=k["resolver"].public_key,
            receiver=k["seller"].public_key,
        ),
        "platform_fee": Decimal("2.5"),
        "milestones": [MilestoneSpec(description="Deliver")],
        "trustline_address": tw.sim.usdc_issuer,
        "amount": Decimal("250"),
    }
    fields.update(over)
    return DeployRequest(**fields)


def test_a_single_release_escrow_end_to_end(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    k, sim = funded, tw.sim

    deployed = sim_client.deploy_single_release(_request(tw, k), deployer=k["platform"])
    cid = deployed.contract_id
    sim_client.fund_escrow(contract_id=cid, funder=k["buyer"], amount=Decimal("250"))
    sim_client.change_milestone_status(
        contract_id=cid,
        milestone_index=0,
        new_status="completed",
        new_evidence="https://proof",
        service_provider=k["seller"],
    )
    sim_client.approve_milestone(contract_id=cid, milestone_index=0, approver=k["buyer"])
    released = sim_client.release_funds(contract_id=cid, release_signer=k["platform"])
    again = sim_client.release_funds(contract_id=cid, release_signer=k["platform"])

    assert deployed.escrow is not None
    assert deployed.escrow.amount == Decimal(250)
    assert released.tx_hash
    assert again.already_done
    # 250 USDC: 0.75 to Trustless Work, 6.25 to the platform, 243 to the seller.
    assert sim.stroops(sim.tw_fee_address) == 7_500_000
    assert sim.stroops(k["platform"].public_key) == 62_500_000
    assert sim.stroops(k["seller"].public_key) == 2_430_000_000
    assert sim.stroops(k["buyer"].public_key) == 7_500_000_000
    assert sim.applied_count(cid, "release_funds") == 1
    escrow = sim_client.get_escrow(cid, signer=k["platform"].public_key)
    assert escrow.released
    assert escrow.balance == 0


def test_a_multi_release_escrow_with_two_milestones(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    k, sim = funded, tw.sim
    request = _request(
        tw,
        k,
        amount=None,
        platform_fee=Decimal(0),
        milestones=[
            MilestoneSpec(
                description="Sketch", amount=Decimal("100.0000001"), receiver=k["seller"].public_key
            ),
            MilestoneSpec(
                description="Final", amount=Decimal("50"), receiver=k["seller"].public_key
            ),
        ],
    )

    cid = sim_client.deploy_multi_release(request, deployer=k["platform"]).contract_id
    sim_client.fund_escrow(
        contract_id=cid, funder=k["buyer"], amount=Decimal("150.0000001"), escrow_type=MULTI
    )
    for index in (0, 1):
        sim_client.change_milestone_status(
            contract_id=cid,
            milestone_index=index,
            new_status="done",
            service_provider=k["seller"],
            escrow_type=MULTI,
        )
        sim_client.approve_milestone(
            contract_id=cid, milestone_index=index, approver=k["buyer"], escrow_type=MULTI
        )
        sim_client.release_milestone_funds(
            contract_id=cid, milestone_index=index, release_signer=k["platform"]
        )

    # 0.3 % of 1,000,000,001 stroops is 3,000,000 (rounded down) and of 500,000,000 is 1,500,000.
    assert sim.stroops(sim.tw_fee_address) == 3_000_000 + 1_500_000
    assert sim.stroops(k["seller"].public_key) == (1_000_000_001 - 3_000_000) + (
        500_000_000 - 1_500_000
    )
    assert sim.stroops(cid) == 0
    assert sim.applied_count(cid, "release_milestone_funds") == 2


def test_dispute_and_a_sixty_forty_resolution(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    k, sim = funded, tw.sim
    cid = sim_client.deploy_single_release(
        _request(tw, k, amount=Decimal(100)), deployer=k["platform"]
    ).contract_id
    sim_client.fund_escrow(contract_id=cid, funder=k["buyer"], amount=Decimal(100))

    sim_client.dispute_escrow(contract_id=cid, signer=k["buyer"])
    with pytest.raises(ProviderRejectedError, match="Only the dispute resolver"):
        sim_client.resolve_dispute(
            contract_id=cid,
            dispute_resolver=k["buyer"],
            distributions=[Distribution(address=k["buyer"].public_key, amount=Decimal(100))],
        )
    result = sim_client.resolve_dispute(
        contract_id=cid,
        dispute_resolver=k["resolver"],
        distributions=[
            Distribution(address=k["buyer"].public_key, amount=Decimal(60)),
            Distribution(address=k["seller"].public_key, amount=Decimal(40)),
        ],
    )

    assert result.tx_hash
    assert sim.stroops(k["buyer"].public_key) == 9_000_000_000 + 583_200_000
    assert sim.stroops(k["seller"].public_key) == 388_800_000
    assert sim.stroops(sim.tw_fee_address) == 3_000_000
    assert sim.stroops(k["platform"].public_key) == 25_000_000
    assert sim_client.get_escrow(cid, signer=k["platform"].public_key).resolved


def test_a_timeout_after_the_funding_applied_funds_exactly_once(
    tw: TwHttp, funded: dict[str, StellarKey]
) -> None:
    k, sim = funded, tw.sim
    client = TrustlessWorkClient(
        base_url=tw.base_url,
        api_key=DEFAULT_API_KEY,
        network_passphrase=TESTNET,
        read_timeout=1.0,  # the simulator applies at once, then holds the answer back
        rate_per_minute=10_000,
        confirm_delays=(0, 0, 0),
        sleep=lambda s: None,
    )
    cid = client.deploy_single_release(_request(tw, k), deployer=k["platform"]).contract_id
    sim.add_fault("timeout_after_apply", path="send-transaction", hold_seconds=30)

    result = client.fund_escrow(contract_id=cid, funder=k["buyer"], amount=Decimal("250"))

    assert result.confirmed_by_lookup
    assert sim.applied_count(cid, "fund_escrow") == 1
    assert sim.submissions(result.tx_hash) == 1
    assert sim.stroops(cid) == 2_500_000_000
    assert sim.stroops(k["buyer"].public_key) == 7_500_000_000


def test_not_complete_yet_for_a_funding_that_lands_is_not_submitted_again(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    k, sim = funded, tw.sim
    cid = sim_client.deploy_single_release(_request(tw, k), deployer=k["platform"]).contract_id
    sim.add_fault("not_complete_yet", path="send-transaction", lands_after_requests=2)

    result = sim_client.fund_escrow(contract_id=cid, funder=k["buyer"], amount=Decimal("250"))

    assert result.confirmed_by_lookup
    assert sim.submissions(result.tx_hash) == 1
    assert sim.applied_count(cid, "fund_escrow") == 1
    assert sim.stroops(cid) == 2_500_000_000


def test_a_funding_still_settling_is_resent_as_the_same_envelope_only(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    k, sim = funded, tw.sim
    cid = sim_client.deploy_single_release(_request(tw, k), deployer=k["platform"]).contract_id
    sim.add_fault("not_complete_yet", path="send-transaction", lands_after_requests=6)

    result = sim_client.fund_escrow(contract_id=cid, funder=k["buyer"], amount=Decimal("250"))

    assert sim.applied_count(cid, "fund_escrow") == 1
    assert sim.submissions(result.tx_hash) >= 2  # resent while settling, never rebuilt
    assert sim.stats()["built"] == 2  # the deploy and one funding
    assert sim.stroops(cid) == 2_500_000_000


def test_the_indexer_lag_after_a_deploy_does_not_stop_the_funding(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    tw.sim.configure(indexer_lag_seconds=None)  # only update-from-txHash moves the read model

    cid = sim_client.deploy_single_release(
        _request(tw, funded), deployer=funded["platform"]
    ).contract_id
    result = sim_client.fund_escrow(contract_id=cid, funder=funded["buyer"], amount=Decimal("250"))

    assert result.tx_hash
    assert tw.sim.applied_count(cid, "fund_escrow") == 1


def test_a_client_on_the_wrong_network_gets_bad_auth(
    tw: TwHttp, funded: dict[str, StellarKey]
) -> None:
    client = TrustlessWorkClient(
        base_url=tw.base_url,
        api_key=DEFAULT_API_KEY,
        network_passphrase=Network.PUBLIC_NETWORK_PASSPHRASE,
        rate_per_minute=10_000,
        confirm_delays=(0,),
        sleep=lambda s: None,
    )

    with pytest.raises(ProviderRejectedError) as info:
        client.deploy_single_release(_request(tw, funded), deployer=funded["platform"])

    assert info.value.reason_code == "tx_bad_auth"


def test_problem_details_from_the_simulator_map_the_same(
    tw: TwHttp, sim_client: TrustlessWorkClient, funded: dict[str, StellarKey]
) -> None:
    cid = sim_client.deploy_single_release(
        _request(tw, funded), deployer=funded["platform"]
    ).contract_id
    sim_client.fund_escrow(contract_id=cid, funder=funded["buyer"], amount=Decimal("250"))
    tw.sim.configure(error_style="problem")

    with pytest.raises(ProviderRejectedError) as info:
        sim_client.release_funds(contract_id=cid, release_signer=funded["platform"])

    assert info.value.message == "The escrow must be completed to release earnings"
    assert info.value.reason_code == "ESCROW_NOT_COMPLETED"


# --- The record of each request (ProviderCall) --------------------------------------------------


def _calls() -> list[ProviderCall]:
    return list(ProviderCall.objects.filter(provider="trustless_work").order_by("pk"))


def test_each_request_is_recorded_with_the_contract_it_names(
    client: TrustlessWorkClient, mock: responses.RequestsMock
) -> None:
    add_json(mock, "GET", GET_ESCROWS, [escrow_body()])
    add_json(mock, "POST", UPDATE, {"message": "ok"})

    client.get_escrow(CONTRACT, signer="GSIGNER")
    client.update_from_tx_hash("ab" * 32)

    read, update = _calls()
    assert (read.operation, read.method, read.path) == (
        "get_escrows",
        "GET",
        "/helper/get-escrow-by-contract-ids",
    )
    assert (read.reference, read.outcome, read.response_status) == (CONTRACT, "ok", 200)
    assert CONTRACT in read.response_body
    assert (update.operation, update.request_body, update.reference) == (
        "update_from_tx_hash",
        {"txHash": "ab" * 32},
        "",
    )


def test_failures_are_recorded_without_the_api_key(mock: responses.RequestsMock) -> None:
    client = one_shot_client()
    add_json(mock, "GET", GET_ESCROWS, {"message": f"bad key {KEY}"}, status=400)
    with pytest.raises(ProviderRejectedError):
        client.get_escrows([CONTRACT], signer="G")
    mock.replace("GET", GET_ESCROWS, body=requests.ReadTimeout("slow"))
    with pytest.raises(ProviderTimeoutError):
        client.get_escrows([CONTRACT], signer="G")
    mock.replace("GET", GET_ESCROWS, body="<html>oops", status=200)
    with pytest.raises(ProviderUnavailableError):
        client.get_escrows([CONTRACT], signer="G")

    rejected, timed_out, unreadable = _calls()
    assert (rejected.outcome, rejected.response_status) == ("http_error", 400)
    assert (timed_out.outcome, timed_out.response_status) == ("timeout", None)
    assert unreadable.outcome == "invalid_response"
    for call in (rejected, timed_out, unreadable):
        stored = f"{call.request_body} {call.response_body} {call.error} {call.path}"
        assert KEY not in stored
    assert "[redacted]" in rejected.response_body


def test_a_submission_is_recorded_under_its_contract(
    client: TrustlessWorkClient, mock: responses.RequestsMock, keys: dict[str, StellarKey]
) -> None:
    fund_12_50(client, mock, keys["buyer"])

    by_operation = {c.operation: c for c in _calls()}
    assert by_operation["build_fund_escrow"].reference == CONTRACT
    submit = by_operation["submit_fund_escrow"]
    assert (submit.reference, submit.path, submit.outcome) == (
        CONTRACT,
        "/helper/send-transaction",
        "ok",
    )
    assert submit.request_body is not None
    assert "signedXdr" in submit.request_body
