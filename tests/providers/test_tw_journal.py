"""The client's transaction journal against the simulator: a write whose outcome was lost
is settled with the envelope it signed before anything new is built."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.models import Marketplace, MarketplaceUser
from providers.clients.errors import ProviderTimeoutError
from providers.clients.trustless_work import TrustlessWorkClient, TxJournal
from providers.clients.trustless_work_types import DeployRequest, MilestoneSpec, Roles
from providers.models import StellarKey
from providers.sandbox.trustless_work import DEFAULT_API_KEY
from providers.stellar.keys import stellar_key_for, stellar_key_for_user
from tests.providers.tw_support import (  # noqa: F401 - fixtures
    TESTNET,
    TwHttp,
    sim,
    tw,
)

pytestmark = pytest.mark.django_db


class Journal(TxJournal):
    """A journal that remembers what it was given, as a database row would."""

    def __init__(self) -> None:
        super().__init__(pending_xdr="", on_signed=self._signed)
        self.signed: list[str] = []

    def _signed(self, signed_xdr: str, tx_hash: str) -> None:
        self.signed.append(tx_hash)
        self.pending_xdr = signed_xdr


@pytest.fixture
def keys(
    tw: TwHttp, marketplace: Marketplace, make_user: Callable[..., MarketplaceUser]
) -> dict[str, StellarKey]:
    made = {
        "platform": stellar_key_for(marketplace=marketplace, role=StellarKey.Role.PLATFORM),
        "resolver": stellar_key_for(marketplace=marketplace, role=StellarKey.Role.DISPUTE_RESOLVER),
        "buyer": stellar_key_for_user(user=make_user(marketplace, "BUYER")),
        "seller": stellar_key_for_user(user=make_user(marketplace, "SELLER")),
    }
    for name, key in made.items():
        tw.sim.create_account(key.public_key, usdc="1000" if name == "buyer" else 0)
    return made


def client(tw: TwHttp, **over: Any) -> TrustlessWorkClient:
    options: dict[str, Any] = {
        "base_url": tw.base_url,
        "api_key": DEFAULT_API_KEY,
        "network_passphrase": TESTNET,
        "read_timeout": 1.0,
        "rate_per_minute": 10_000,
        "confirm_delays": (),  # give up at once: the caller's retry must settle it
        "sleep": lambda s: None,
    }
    options.update(over)
    return TrustlessWorkClient(**options)


def request(tw: TwHttp, k: dict[str, StellarKey]) -> DeployRequest:
    return DeployRequest(
        engagement_id="ord_journal_1",
        title="Logo",
        description="A logo",
        roles=Roles(
            approver=k["buyer"].public_key,
            service_provider=k["seller"].public_key,
            platform_address=k["platform"].public_key,
            release_signer=k["platform"].public_key,
            dispute_resolver=k["resolver"].public_key,
            receiver=k["seller"].public_key,
        ),
        platform_fee=Decimal("0"),
        milestones=[MilestoneSpec(description="Deliver")],
        trustline_address=tw.sim.usdc_issuer,
        amount=Decimal("250"),
    )


def test_a_funding_still_settling_is_settled_with_its_envelope_not_built_again(tw, keys):
    c = client(tw)
    cid = c.deploy_single_release(request(tw, keys), deployer=keys["platform"]).contract_id
    # The submission answers "not complete yet"; the transaction lands three requests later.
    tw.sim.add_fault("not_complete_yet", path="send-transaction", lands_after_requests=3)
    journal = Journal()
    with pytest.raises(ProviderTimeoutError):
        c.fund_escrow(contract_id=cid, funder=keys["buyer"], amount=Decimal("250"), journal=journal)
    built = tw.sim.stats()["built"]
    assert tw.sim.applied_count(cid, "fund_escrow") == 0  # still settling

    result = c.fund_escrow(
        contract_id=cid, funder=keys["buyer"], amount=Decimal("250"), journal=journal
    )

    assert result.tx_hash == journal.signed[0]
    assert result.confirmed_by_lookup
    assert len(journal.signed) == 1
    assert tw.sim.stats()["built"] == built
    assert tw.sim.submissions(journal.signed[0]) == 1
    assert tw.sim.applied_count(cid, "fund_escrow") == 1
    assert tw.sim.stroops(cid) == 2_500_000_000


def test_an_envelope_that_never_landed_and_expired_is_built_anew_once(tw, keys):
    c = client(tw)
    cid = c.deploy_single_release(request(tw, keys), deployer=keys["platform"]).contract_id
    tw.sim.add_fault("timeout", path="send-transaction", hold_seconds=2)  # never applied
    journal = Journal()
    with pytest.raises(ProviderTimeoutError):
        c.fund_escrow(contract_id=cid, funder=keys["buyer"], amount=Decimal("250"), journal=journal)
    tw.sim.advance_clock(301)  # past the envelope's time bounds

    result = c.fund_escrow(
        contract_id=cid, funder=keys["buyer"], amount=Decimal("250"), journal=journal
    )

    assert len(journal.signed) == 2
    assert result.tx_hash == journal.signed[1]
    assert tw.sim.transaction(journal.signed[0])["state"] == "built"
    assert tw.sim.applied_count(cid, "fund_escrow") == 1
    assert tw.sim.stroops(cid) == 2_500_000_000


def test_an_unindexed_deploy_whose_answer_was_lost_is_found_by_its_hash(tw, keys):
    tw.sim.configure(indexer_lag_seconds=None)  # only update-from-txHash moves the read model
    tw.sim.add_fault("timeout_after_apply", path="send-transaction", hold_seconds=2)
    c = client(tw)
    journal = Journal()
    with pytest.raises(ProviderTimeoutError):
        c.deploy_single_release(request(tw, keys), deployer=keys["platform"], journal=journal)

    result = c.deploy_single_release(request(tw, keys), deployer=keys["platform"], journal=journal)

    assert len(journal.signed) == 1
    assert result.contract_id
    assert tw.sim.stats()["built"] == 1
    assert list(tw.sim.stats()["applied"]) == [result.contract_id]
