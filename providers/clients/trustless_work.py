"""Trustless Work V1 REST client (escrow contracts on Stellar), on `requests`.

Facts it follows (../shared/reference/providers.md §1): `x-api-key` on every request; 50
requests per minute per key; write endpoints answer an unsigned transaction that the role
named by the endpoint signs, then `POST /helper/send-transaction` submits it; amounts are
JSON numbers in USDC units; errors come as `{message}` or as RFC 9457 Problem Details.

Behaviour:
- Explicit (connect, read) timeouts; a client-side token bucket of 50 requests a minute.
- Before signing, the unsigned transaction is checked: one contract call, from the signing
  key's account, to the expected function and contract (and, for money, the expected
  amounts). A key never signs something the API made up.
- Every write first reads the escrow on chain: if the effect is already there (a retry
  after a lost answer), nothing is sent (`TxResult.already_done`).
- A submission whose outcome is unknown (timeout, 5xx, dropped connection, or Trustless
  Work's transient "resultMetaXdr ... not be complete yet") is confirmed before anything
  is resent: the indexer is asked to update from the transaction hash and the escrow is
  read on chain. Only if the effect is absent is the *same signed envelope* sent again;
  it carries the same sequence number, so it can land at most once. A funding or release
  is therefore never submitted twice.
- A caller that must survive a crash passes a `TxJournal`: the signed envelope is handed
  to it before its first submission, and a later attempt given that envelope back settles
  it first (looks for its effect, sends the same envelope again) and builds a new
  transaction only once the old one has provably not landed and never can (its sequence
  number was spent by another transaction, or its time bounds passed).
- `status: "FAILED"` is a failure whatever the HTTP status. Errors map to
  providers.clients.errors: 429 -> ProviderRateLimitedError, 5xx and connection failures
  -> ProviderUnavailableError, timeouts -> ProviderTimeoutError, other 4xx ->
  ProviderRejectedError with the contract's message ("Escrow not found" and 404 ->
  ProviderNotFoundError).
"""

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from stellar_sdk import Address, InvokeHostFunction, TransactionEnvelope, scval

from providers import json_numbers
from providers.clients.errors import (
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from providers.clients.trustless_work_types import (
    MULTI,
    SINGLE,
    Balance,
    DeployRequest,
    Distribution,
    Escrow,
    TxResult,
    usdc,
)
from providers.models import StellarKey
from providers.recording import call_recorder
from providers.stellar.keys import sign_transaction_xdr

logger = logging.getLogger(__name__)

PROVIDER = "trustless_work"
_TX_CODE = re.compile(r"\b(tx_[a-z_]+)\b")
_RETRYABLE_TX_CODES = frozenset({"tx_bad_seq", "tx_too_late", "tx_insufficient_fee"})
_STROOPS = 10_000_000


def is_not_complete_yet(message: str) -> bool:
    """Trustless Work's answer while a submitted transaction is still settling."""
    text = message.lower()
    return "resultmetaxdr" in text or "not be complete yet" in text


class _Bucket:
    """A token bucket for one API key in this process (50 a minute, bursts of 50)."""

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.clock, self.sleep = clock, sleep
        self.updated = clock()
        self.lock = threading.Lock()

    def acquire(self, max_wait: float) -> None:
        """Take a token, waiting up to `max_wait` seconds for one.

        Raises:
            ProviderRateLimitedError: no token within `max_wait`; nothing was reserved.
        """
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            if wait > max_wait:
                raise ProviderRateLimitedError(
                    "Client-side limit of Trustless Work's 50 requests a minute reached.",
                    provider=PROVIDER,
                    retry_after=wait,
                )
            self.tokens -= 1  # reserved now; the caller waits for it outside the lock
        if wait > 0:
            self.sleep(wait)


@dataclass(frozen=True)
class _Expect:
    """What the unsigned transaction of one write must be, and how to see it landed."""

    operation: str
    function: str
    contract_id: str  # "" for a deploy (the factory's address is Trustless Work's)
    landed: Callable[[Escrow], bool]
    args: Callable[[list[Any]], bool] = lambda args: True


@dataclass
class TxJournal:
    """Where a caller keeps one write's signed envelope between attempts.

    `pending_xdr`: the envelope an earlier attempt signed (and may have sent), or "".
    `on_signed(signed_xdr, tx_hash)` is called before a new envelope is first submitted;
    it must store it durably (a crash right after it must not lose it).
    """

    pending_xdr: str = ""
    on_signed: Callable[[str, str], None] = lambda signed_xdr, tx_hash: None


class TrustlessWorkClient:
    """One API key at one Trustless Work base URL. Thread-safe; share it."""

    _buckets: dict[tuple[str, str, int], _Bucket] = {}
    _buckets_lock = threading.Lock()

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        network_passphrase: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        rate_per_minute: int | None = None,
        rate_limit_max_wait: float = 5.0,
        confirm_delays: Sequence[float] | None = None,
        attempts: int = 3,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = (base_url or settings.TRUSTLESS_WORK_BASE_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else settings.TRUSTLESS_WORK_API_KEY
        self.network_passphrase = network_passphrase or settings.STELLAR_NETWORK_PASSPHRASE
        self.timeout = (
            connect_timeout or settings.TRUSTLESS_WORK_CONNECT_TIMEOUT,
            read_timeout or settings.TRUSTLESS_WORK_READ_TIMEOUT,
        )
        self.confirm_delays = tuple(
            settings.TRUSTLESS_WORK_CONFIRM_DELAYS if confirm_delays is None else confirm_delays
        )
        self.attempts = max(1, attempts)
        self.rate_limit_max_wait = rate_limit_max_wait
        self._session = session or requests.Session()
        self._sleep = sleep
        per_minute = rate_per_minute or settings.TRUSTLESS_WORK_RATE_LIMIT_PER_MINUTE
        if clock is time.monotonic and sleep is time.sleep:
            # Every client of this key in the process spends the same budget.
            with self._buckets_lock:
                key = (self.base_url, self._api_key, per_minute)
                self._bucket = self._buckets.setdefault(
                    key, _Bucket(per_minute, clock=clock, sleep=sleep)
                )
        else:  # a test's clock: its own bucket
            self._bucket = _Bucket(per_minute, clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return f"<TrustlessWorkClient {self.base_url}>"

    # --- HTTP -----------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        reference: str = "",
    ) -> Any:
        """Send one request, record it (a redacted ProviderCall), and return its parsed
        answer or raise its error. `reference` defaults to the contract or engagement id the
        request names."""
        self._bucket.acquire(self.rate_limit_max_wait)
        headers = {"x-api-key": self._api_key, "accept": "application/json"}
        data = None
        if body is not None:
            headers["content-type"] = "application/json"
            data = json_numbers.dumps(body).encode()
        record = call_recorder(
            provider=PROVIDER,
            operation=operation,
            method=method,
            path=path,
            reference=reference or _reference_of(body, params),
            request_body=body,
            scrub=self._scrub,
        )
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                data=data,
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            error = _transport_error(exc, operation)
            outcome = "timeout" if isinstance(error, ProviderTimeoutError) else "connection_error"
            record(None, "", outcome, error.message)
            raise error from None
        if response.status_code >= 400:
            error = _error_for(response, operation, scrub=self._api_key)
            record(response.status_code, response.text, "http_error", error.message)
            raise error
        try:
            answer = json_numbers.loads(response.text)
        except ValueError:
            error = ProviderUnavailableError(
                f"Trustless Work answered {operation} with unreadable JSON.",
                provider=PROVIDER,
                http_status=response.status_code,
            )
            record(response.status_code, response.text, "invalid_response", error.message)
            raise error from None
        record(response.status_code, response.text, "ok", "")
        return answer

    def _scrub(self, text: str) -> str:
        """`text` without our API key (a misbehaving server could echo it back)."""
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _safe_request(self, method: str, path: str, *, operation: str, **kw: Any) -> Any:
        """A request without side effects (build, read): retried on 429, 5xx and timeouts."""
        for attempt in range(1, self.attempts + 1):
            try:
                return self._request(method, path, operation=operation, **kw)
            except (
                ProviderRateLimitedError,
                ProviderUnavailableError,
                ProviderTimeoutError,
            ) as exc:
                if attempt == self.attempts:
                    raise
                delay = getattr(exc, "retry_after", 0.0) or 0.5 * 2 ** (attempt - 1)
                logger.info("Trustless Work %s: %s; retry in %.1fs", operation, exc.message, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- Reads ----------------------------------------------------------------------------------

    def get_escrows(
        self, contract_ids: Sequence[str], *, signer: str, validate_on_chain: bool = False
    ) -> list[Escrow]:
        """Escrows by contract id (missing ones are left out)."""
        params = {
            "contractIds[]": list(contract_ids),
            "signer": signer,
            "validateOnChain": "true" if validate_on_chain else "false",
        }
        found = self._safe_request(
            "GET", "/helper/get-escrow-by-contract-ids", operation="get_escrows", params=params
        )
        return [Escrow.from_json(item) for item in _list(found)]

    def get_escrow(
        self, contract_id: str, *, signer: str, validate_on_chain: bool = True
    ) -> Escrow:
        """One escrow, read on chain by default.

        Raises:
            ProviderNotFoundError: no such escrow (or not indexed yet, when not on chain).
        """
        for escrow in self.get_escrows(
            [contract_id], signer=signer, validate_on_chain=validate_on_chain
        ):
            if escrow.contract_id == contract_id:
                return escrow
        raise ProviderNotFoundError(
            f"Trustless Work has no escrow {contract_id}.", provider=PROVIDER, retryable=True
        )

    def get_escrows_by_signer(self, signer: str, **filters: Any) -> list[Escrow]:
        """Escrows deployed by `signer`; filters as the API names them (engagementId, ...)."""
        params = {"signer": signer, **{k: _param(v) for k, v in filters.items()}}
        found = self._safe_request(
            "GET", "/helper/get-escrows-by-signer", operation="get_escrows_by_signer", params=params
        )
        return [Escrow.from_json(item) for item in _list(found)]

    def get_escrows_by_role(self, role: str, address: str, **filters: Any) -> list[Escrow]:
        params = {"role": role, "roleAddress": address}
        params |= {k: _param(v) for k, v in filters.items()}
        found = self._safe_request(
            "GET", "/helper/get-escrows-by-role", operation="get_escrows_by_role", params=params
        )
        return [Escrow.from_json(item) for item in _list(found)]

    def get_balances(
        self, addresses: Sequence[str], *, signer: str, escrow_type: str = SINGLE
    ) -> list[Balance]:
        params = {"signer": signer, "addresses[]": list(addresses)}
        found = self._safe_request(
            "GET",
            f"/escrow/{_kind(escrow_type)}/get-multiple-escrow-balance",
            operation="get_balances",
            params=params,
        )
        return [
            Balance(address=str(b["address"]), balance=Decimal(b["balance"])) for b in _list(found)
        ]

    def update_from_tx_hash(self, tx_hash: str) -> str:
        """Ask the indexer to catch up from a transaction; returns its message.

        Raises:
            ProviderNotFoundError: the API does not know the transaction (yet).
        """
        answer = self._request(
            "POST",
            "/indexer/update-from-txHash",
            operation="update_from_tx_hash",
            body={"txHash": tx_hash},
        )
        return str(answer.get("message", "")) if isinstance(answer, dict) else ""

    # --- Writes ---------------------------------------------------------------------------------

    def deploy_single_release(
        self, request: DeployRequest, *, deployer: StellarKey, journal: TxJournal | None = None
    ) -> TxResult:
        return self._deploy(request, deployer, SINGLE, journal)

    def deploy_multi_release(
        self, request: DeployRequest, *, deployer: StellarKey, journal: TxJournal | None = None
    ) -> TxResult:
        return self._deploy(request, deployer, MULTI, journal)

    def _deploy(
        self, request: DeployRequest, deployer: StellarKey, kind: str, journal: TxJournal | None
    ) -> TxResult:
        """Deploy, unless an escrow with this engagement id by this deployer already exists.

        An unindexed deploy is invisible to that lookup: pass a journal, so that a retry
        finds the earlier transaction by its hash instead of deploying a second contract.
        """
        body = request.as_json(signer=deployer.public_key, kind=kind)
        operation = f"deploy_{kind.replace('-', '_')}"
        existing = self._deployed(deployer.public_key, request.engagement_id)
        if existing is not None:
            return TxResult(
                operation=operation,
                contract_id=existing.contract_id,
                tx_hash="",
                escrow=existing,
                already_done=True,
            )
        expect = _Expect(
            operation,
            "deploy",
            "",
            landed=lambda escrow: True,
            args=lambda args: (
                len(args) == 6 and _is(args[0], deployer) and args[3] == "initialize_escrow"
            ),
        )

        def find() -> Escrow | None:
            return self._deployed(deployer.public_key, request.engagement_id)

        settled = self._settle(journal, expect, find)
        if settled is not None:
            answer, tx_hash, confirmed = settled
        else:
            unsigned = self._build("POST", f"/deployer/{kind}", body, operation)
            self._check(unsigned, deployer.public_key, expect)
            signed = sign_transaction_xdr(deployer, unsigned, self.network_passphrase)
            self._record(journal, signed)
            answer, tx_hash, confirmed = self._submit(signed, expect, find=find)
        escrow_json = answer.get("escrow")
        escrow = Escrow.from_json(escrow_json) if isinstance(escrow_json, dict) else None
        if confirmed is not None:
            escrow = confirmed
        else:
            # Funding looks the escrow up in the indexer ("Escrow not found" until then).
            self._nudge_indexer(tx_hash)
        contract_id = str(answer.get("contractId") or (escrow.contract_id if escrow else ""))
        return TxResult(
            operation=operation,
            contract_id=contract_id,
            tx_hash=tx_hash,
            message=str(answer.get("message", "")),
            escrow=escrow,
            confirmed_by_lookup=confirmed is not None,
        )

    def _deployed(self, deployer: str, engagement_id: str) -> Escrow | None:
        found = self.get_escrows_by_signer(
            deployer, engagementId=engagement_id, validateOnChain=True
        )
        matches = [e for e in found if e.engagement_id == engagement_id]
        return matches[0] if matches else None

    def fund_escrow(
        self,
        *,
        contract_id: str,
        funder: StellarKey,
        amount: Decimal,
        escrow_type: str = SINGLE,
        journal: TxJournal | None = None,
    ) -> TxResult:
        """Move `amount` USDC from the funder's account into the escrow.

        Nothing is sent when the escrow already holds its whole amount (a retry).
        """
        amount = usdc(amount)
        before = self.get_escrow(contract_id, signer=funder.public_key)
        operation = "fund_escrow"
        if before.balance >= before.total:
            return _done(operation, contract_id, before)
        stroops = int(amount * _STROOPS)
        expect = _Expect(
            operation,
            "fund_escrow",
            contract_id,
            landed=lambda escrow: escrow.balance >= before.balance + amount,
            args=lambda args: len(args) == 3 and args[2] == stroops and _is(args[0], funder),
        )
        body = {"contractId": contract_id, "signer": funder.public_key, "amount": amount}
        return self._write(escrow_type, "fund-escrow", body, funder, expect, journal)

    def change_milestone_status(
        self,
        *,
        contract_id: str,
        milestone_index: int,
        new_status: str,
        service_provider: StellarKey,
        new_evidence: str | None = None,
        escrow_type: str = SINGLE,
        journal: TxJournal | None = None,
    ) -> TxResult:
        def landed(escrow: Escrow) -> bool:
            milestone = _nth(escrow, milestone_index)
            return (
                milestone is not None
                and milestone.status == new_status
                and (new_evidence is None or milestone.evidence == new_evidence)
            )

        before = self.get_escrow(contract_id, signer=service_provider.public_key)
        if landed(before):
            return _done("change_milestone_status", contract_id, before)
        body: dict[str, Any] = {
            "contractId": contract_id,
            "milestoneIndex": str(milestone_index),
            "newStatus": new_status,
            "serviceProvider": service_provider.public_key,
        }
        if new_evidence is not None:
            body["newEvidence"] = new_evidence
        expect = _Expect("change_milestone_status", "change_milestone_status", contract_id, landed)
        return self._write(
            escrow_type, "change-milestone-status", body, service_provider, expect, journal
        )

    def approve_milestone(
        self,
        *,
        contract_id: str,
        milestone_index: int,
        approver: StellarKey,
        escrow_type: str = SINGLE,
        journal: TxJournal | None = None,
    ) -> TxResult:
        def landed(escrow: Escrow) -> bool:
            milestone = _nth(escrow, milestone_index)
            return milestone is not None and milestone.approved

        body = {
            "contractId": contract_id,
            "milestoneIndex": str(milestone_index),
            "approver": approver.public_key,
        }
        expect = _Expect("approve_milestone", "approve_milestone", contract_id, landed)
        return self._idempotent_write(
            escrow_type, "approve-milestone", body, approver, expect, journal
        )

    def release_funds(
        self, *, contract_id: str, release_signer: StellarKey, journal: TxJournal | None = None
    ) -> TxResult:
        """Release a single-release escrow: fees to Trustless Work and the platform, the rest
        to the receiver."""
        body = {"contractId": contract_id, "releaseSigner": release_signer.public_key}
        expect = _Expect(
            "release_funds", "release_funds", contract_id, landed=lambda e: e.released or e.resolved
        )
        return self._idempotent_write(
            SINGLE, "release-funds", body, release_signer, expect, journal
        )

    def release_milestone_funds(
        self,
        *,
        contract_id: str,
        milestone_index: int,
        release_signer: StellarKey,
        journal: TxJournal | None = None,
    ) -> TxResult:
        def landed(escrow: Escrow) -> bool:
            milestone = _nth(escrow, milestone_index)
            return milestone is not None and (milestone.released or milestone.resolved)

        body = {
            "contractId": contract_id,
            "releaseSigner": release_signer.public_key,
            "milestoneIndex": str(milestone_index),
        }
        expect = _Expect("release_milestone_funds", "release_milestone_funds", contract_id, landed)
        return self._idempotent_write(
            MULTI, "release-milestone-funds", body, release_signer, expect, journal
        )

    def dispute_escrow(
        self, *, contract_id: str, signer: StellarKey, journal: TxJournal | None = None
    ) -> TxResult:
        body = {"contractId": contract_id, "signer": signer.public_key}
        expect = _Expect(
            "dispute_escrow",
            "dispute_escrow",
            contract_id,
            landed=lambda e: e.disputed or e.resolved,
        )
        return self._idempotent_write(SINGLE, "dispute-escrow", body, signer, expect, journal)

    def dispute_milestone(
        self,
        *,
        contract_id: str,
        milestone_index: int,
        signer: StellarKey,
        journal: TxJournal | None = None,
    ) -> TxResult:
        def landed(escrow: Escrow) -> bool:
            milestone = _nth(escrow, milestone_index)
            return milestone is not None and (milestone.disputed or milestone.resolved)

        body = {
            "contractId": contract_id,
            "signer": signer.public_key,
            "milestoneIndex": str(milestone_index),
        }
        expect = _Expect("dispute_milestone", "dispute_milestone", contract_id, landed)
        return self._idempotent_write(MULTI, "dispute-milestone", body, signer, expect, journal)

    def resolve_dispute(
        self,
        *,
        contract_id: str,
        dispute_resolver: StellarKey,
        distributions: Sequence[Distribution],
        journal: TxJournal | None = None,
    ) -> TxResult:
        """Pay out a disputed single-release escrow; the amounts must add up to its balance.

        Fees are taken from the total and charged to each distribution pro rata.
        """
        body = _distribution_body(contract_id, dispute_resolver, distributions)
        expect = _Expect(
            "resolve_dispute",
            "resolve_dispute",
            contract_id,
            landed=lambda e: e.resolved,
            args=lambda args: len(args) == 3 and _same_map(args[2], distributions),
        )
        return self._idempotent_write(
            SINGLE, "resolve-dispute", body, dispute_resolver, expect, journal
        )

    def resolve_milestone_dispute(
        self,
        *,
        contract_id: str,
        milestone_index: int,
        dispute_resolver: StellarKey,
        distributions: Sequence[Distribution],
        journal: TxJournal | None = None,
    ) -> TxResult:
        def landed(escrow: Escrow) -> bool:
            milestone = _nth(escrow, milestone_index)
            return milestone is not None and milestone.resolved

        body = _distribution_body(contract_id, dispute_resolver, distributions)
        body["milestoneIndex"] = str(milestone_index)
        expect = _Expect(
            "resolve_milestone_dispute",
            "resolve_milestone_dispute",
            contract_id,
            landed,
            args=lambda args: len(args) == 4 and _same_map(args[3], distributions),
        )
        return self._idempotent_write(
            MULTI, "resolve-milestone-dispute", body, dispute_resolver, expect, journal
        )

    def withdraw_remaining_funds(
        self,
        *,
        contract_id: str,
        dispute_resolver: StellarKey,
        distributions: Sequence[Distribution],
    ) -> TxResult:
        """Pay out what is left in a multi-release escrow once every milestone is settled."""
        total = sum((usdc(d.amount) for d in distributions), Decimal(0))
        before = self.get_escrow(contract_id, signer=dispute_resolver.public_key)
        body = _distribution_body(contract_id, dispute_resolver, distributions)
        expect = _Expect(
            "withdraw_remaining_funds",
            "withdraw_remaining_funds",
            contract_id,
            landed=lambda escrow: escrow.balance <= before.balance - total,
            args=lambda args: len(args) == 3 and _same_map(args[2], distributions),
        )
        return self._write(MULTI, "withdraw-remaining-funds", body, dispute_resolver, expect)

    # --- Build, check, sign, submit, confirm ----------------------------------------------------

    def _idempotent_write(
        self,
        kind: str,
        action: str,
        body: dict[str, Any],
        key: StellarKey,
        expect: _Expect,
        journal: TxJournal | None = None,
    ) -> TxResult:
        """A write whose effect is a flag: skipped when the chain already shows it."""
        before = self.get_escrow(expect.contract_id, signer=key.public_key)
        if expect.landed(before):
            return _done(expect.operation, expect.contract_id, before)
        return self._write(kind, action, body, key, expect, journal)

    def _write(
        self,
        kind: str,
        action: str,
        body: dict[str, Any],
        key: StellarKey,
        expect: _Expect,
        journal: TxJournal | None = None,
    ) -> TxResult:
        def find() -> Escrow | None:
            escrow = self.get_escrow(expect.contract_id, signer=key.public_key)
            return escrow if expect.landed(escrow) else None

        settled = self._settle(journal, expect, find)
        if settled is not None:
            answer, tx_hash, confirmed = settled
        else:
            path = f"/escrow/{_kind(kind)}/{action}"
            unsigned = self._build("POST", path, body, expect.operation)
            self._check(unsigned, key.public_key, expect)
            signed = sign_transaction_xdr(key, unsigned, self.network_passphrase)
            self._record(journal, signed)
            answer, tx_hash, confirmed = self._submit(signed, expect, find=find)
        return TxResult(
            operation=expect.operation,
            contract_id=expect.contract_id,
            tx_hash=tx_hash,
            message=str(answer.get("message", "")),
            escrow=confirmed,
            confirmed_by_lookup=confirmed is not None,
        )

    def _record(self, journal: TxJournal | None, signed: str) -> None:
        if journal is not None:
            tx_hash = TransactionEnvelope.from_xdr(signed, self.network_passphrase).hash_hex()
            journal.on_signed(signed, tx_hash)

    def _settle(
        self, journal: TxJournal | None, expect: _Expect, find: Callable[[], Escrow | None]
    ) -> tuple[dict[str, Any], str, Escrow | None] | None:
        """Settle the envelope an earlier attempt signed: its answer if it landed (now or
        before), None if it has not and never can; ProviderError while that is unknown."""
        if journal is None or not journal.pending_xdr:
            return None
        signed = journal.pending_xdr
        tx_hash = TransactionEnvelope.from_xdr(signed, self.network_passphrase).hash_hex()
        found = self._look_up(tx_hash, find)
        if found is not None:
            return {"status": "SUCCESS"}, tx_hash, found
        try:
            return self._submit(signed, expect, find=find)
        except ProviderError as exc:
            if _tx_code(exc) not in ("tx_bad_seq", "tx_too_late"):
                raise
        # Its sequence number is spent or its time is up: it is in a ledger or never will be.
        found = self._look_up(tx_hash, find)
        if found is not None:
            return {"status": "SUCCESS"}, tx_hash, found
        logger.info(
            "Trustless Work %s tx %s never landed; building anew", expect.operation, tx_hash
        )
        return None

    def _build(self, method: str, path: str, body: dict[str, Any], operation: str) -> str:
        answer = self._safe_request(method, path, operation=f"build_{operation}", body=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("unsignedTransaction"), str):
            raise ProviderError(
                f"Trustless Work answered {operation} without an unsigned transaction.",
                provider=PROVIDER,
                retryable=False,
            )
        if answer.get("status", "SUCCESS") != "SUCCESS":
            raise ProviderRejectedError(
                str(answer.get("message") or f"Trustless Work refused {operation}."),
                provider=PROVIDER,
            )
        return str(answer["unsignedTransaction"])

    def _check(self, unsigned: str, source: str, expect: _Expect) -> None:
        """Refuse to sign anything but the one contract call this write asked for."""
        problem = _problem_with(unsigned, source, expect, self.network_passphrase)
        if problem:
            raise ProviderError(
                f"Trustless Work returned an unexpected transaction for {expect.operation} "
                f"({problem}); it was not signed.",
                provider=PROVIDER,
                retryable=False,
            )

    def _submit(
        self, signed: str, expect: _Expect, *, find: Callable[[], Escrow | None]
    ) -> tuple[dict[str, Any], str, Escrow | None]:
        """Submit; on an unknown outcome confirm before resending the same envelope.

        Returns (the SUCCESS answer, tx hash, the escrow when a lookup proved it landed).
        """
        tx_hash = TransactionEnvelope.from_xdr(signed, self.network_passphrase).hash_hex()
        reference = expect.contract_id or tx_hash  # a deploy names no contract yet
        try:
            return self._send(signed, expect.operation, reference), tx_hash, None
        except ProviderError as exc:
            if not _uncertain(exc):
                raise
            logger.warning(
                "Trustless Work %s tx %s: outcome unknown (%s); confirming before any resend",
                expect.operation,
                tx_hash,
                exc.message,
            )
            last: ProviderError = exc
        for delay in self.confirm_delays:
            self._sleep(delay)
            found = self._look_up(tx_hash, find)
            if found is not None:
                return {"status": "SUCCESS"}, tx_hash, found
            try:
                return self._send(signed, expect.operation, reference), tx_hash, None
            except ProviderError as exc:
                if _tx_code(exc) == "tx_bad_seq":
                    # The sequence number is spent: this envelope (or another) is in a ledger.
                    found = self._look_up(tx_hash, find)
                    if found is not None:
                        return {"status": "SUCCESS"}, tx_hash, found
                    raise
                if _tx_code(exc) == "tx_too_late":
                    raise ProviderUnavailableError(
                        f"{expect.operation} tx {tx_hash} expired without landing; it is safe "
                        "to build it again.",
                        provider=PROVIDER,
                        outcome_unknown=False,
                        reason_code="tx_too_late",
                        tx_hash=tx_hash,
                    ) from None
                if not _uncertain(exc):
                    raise
                last = exc
        raise ProviderTimeoutError(
            f"Could not confirm {expect.operation} tx {tx_hash} ({last.message}).",
            provider=PROVIDER,
            tx_hash=tx_hash,
        )

    def _send(self, signed: str, operation: str, reference: str) -> dict[str, Any]:
        """POST the envelope once (a 429 was refused unread, so it is simply sent again)."""
        for attempt in range(1, self.attempts + 1):
            try:
                answer = self._request(
                    "POST",
                    "/helper/send-transaction",
                    operation=f"submit_{operation}",
                    body={"signedXdr": signed},
                    reference=reference,
                )
                break
            except ProviderRateLimitedError as exc:
                if attempt == self.attempts:
                    raise
                self._sleep(exc.retry_after)
        if not isinstance(answer, dict):
            raise ProviderUnavailableError(
                f"Trustless Work answered {operation} with no status.", provider=PROVIDER
            )
        status, message = answer.get("status"), str(answer.get("message", ""))
        if status == "SUCCESS":
            return answer
        if is_not_complete_yet(message):
            raise ProviderUnavailableError(message, provider=PROVIDER)
        raise _rejected(message or f"Trustless Work did not apply {operation}.", None, "")

    def _nudge_indexer(self, tx_hash: str) -> None:
        try:
            self.update_from_tx_hash(tx_hash)
        except ProviderError as exc:  # only a hint; the indexer catches up by itself
            logger.info("Trustless Work indexer update for %s: %s", tx_hash, exc.message)

    def _look_up(self, tx_hash: str, find: Callable[[], Escrow | None]) -> Escrow | None:
        """Whether the transaction's effect is on chain (None: not seen)."""
        self._nudge_indexer(tx_hash)
        try:
            return find()
        except ProviderNotFoundError:
            return None


def _done(operation: str, contract_id: str, escrow: Escrow) -> TxResult:
    logger.info("Trustless Work %s on %s: already on chain, nothing sent", operation, contract_id)
    return TxResult(
        operation=operation, contract_id=contract_id, tx_hash="", escrow=escrow, already_done=True
    )


def _problem_with(unsigned: str, source: str, expect: _Expect, passphrase: str) -> str:
    try:
        tx = TransactionEnvelope.from_xdr(unsigned, passphrase).transaction
    except Exception:  # untrusted bytes: any decoding failure
        return "not a transaction envelope"
    if tx.source.account_id != source:
        return f"source {tx.source.account_id} is not the signer {source}"
    if len(tx.operations) != 1 or not isinstance(tx.operations[0], InvokeHostFunction):
        return "not exactly one contract call"
    call = tx.operations[0].host_function.invoke_contract
    if call is None:
        return "not a contract call"
    function = call.function_name.sc_symbol.decode()
    if function != expect.function:
        return f"calls {function}, not {expect.function}"
    contract = Address.from_xdr_sc_address(call.contract_address).address
    if expect.contract_id and contract != expect.contract_id:
        return f"calls contract {contract}, not {expect.contract_id}"
    try:
        args = [scval.to_native(arg) for arg in call.args]
    except Exception:  # an argument stellar-sdk cannot decode
        return "arguments that cannot be read"
    return "" if expect.args(args) else "arguments that differ from the request"


def _is(value: Any, key: StellarKey) -> bool:
    return isinstance(value, Address) and value.address == key.public_key


def _same_map(value: Any, distributions: Sequence[Distribution]) -> bool:
    if not isinstance(value, dict):
        return False
    got = {k.address if isinstance(k, Address) else k: v for k, v in value.items()}
    want = {d.address: int(usdc(d.amount) * _STROOPS) for d in distributions}
    return got == want


def _distribution_body(
    contract_id: str, resolver: StellarKey, distributions: Sequence[Distribution]
) -> dict[str, Any]:
    if not distributions:
        raise ValueError("A resolution needs at least one distribution.")
    return {
        "contractId": contract_id,
        "disputeResolver": resolver.public_key,
        "distributions": [d.as_json() for d in distributions],
    }


def _nth(escrow: Escrow, index: int) -> Any:
    return escrow.milestones[index] if 0 <= index < len(escrow.milestones) else None


def _kind(kind: str) -> str:
    if kind not in (SINGLE, MULTI):
        raise ValueError(f"escrow type must be {SINGLE!r} or {MULTI!r}, not {kind!r}")
    return kind


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _list(found: Any) -> list[dict[str, Any]]:
    if not isinstance(found, list):
        raise ProviderUnavailableError(
            "Trustless Work answered a read with something other than a list.",
            provider=PROVIDER,
            outcome_unknown=False,
        )
    return [item for item in found if isinstance(item, dict)]


def _tx_code(exc: ProviderError) -> str:
    return exc.reason_code if exc.reason_code.startswith("tx_") else ""


def _uncertain(exc: ProviderError) -> bool:
    """The submission may or may not have been applied."""
    if isinstance(exc, ProviderRateLimitedError):
        return False
    return exc.outcome_unknown or is_not_complete_yet(exc.message)


def _rejected(message: str, status: int | None, code: str) -> ProviderRejectedError:
    tx_code = _TX_CODE.search(message)
    reason = tx_code.group(1) if tx_code else code
    not_found = message.strip().rstrip(".") == "Escrow not found" or status == 404
    cls = ProviderNotFoundError if not_found else ProviderRejectedError
    return cls(
        message,
        provider=PROVIDER,
        http_status=status,
        reason_code=reason,
        # A rebuilt transaction may pass where this one failed; an unindexed escrow appears.
        retryable=reason in _RETRYABLE_TX_CODES or not_found,
    )


def _transport_error(exc: requests.RequestException, operation: str) -> ProviderError:
    if isinstance(exc, requests.ConnectTimeout):
        return ProviderTimeoutError(
            f"Could not connect to Trustless Work for {operation} in time.",
            provider=PROVIDER,
            outcome_unknown=False,
        )
    if isinstance(exc, requests.Timeout):
        return ProviderTimeoutError(
            f"Trustless Work did not answer {operation} in time.", provider=PROVIDER
        )
    return ProviderUnavailableError(
        f"Could not reach Trustless Work for {operation} ({type(exc).__name__}).",
        provider=PROVIDER,
    )


def _reference_of(body: Any, params: Mapping[str, Any] | None) -> str:
    """The contract (or else engagement) id a request names, for its ProviderCall row."""
    for source in (body, params):
        if not isinstance(source, Mapping):
            continue
        for key in ("contractId", "contractIds[]", "engagementId"):
            value = source.get(key)
            if isinstance(value, list | tuple):
                value = value[0] if len(value) == 1 else ""
            if isinstance(value, str) and value:
                return value
    return ""


def _error_for(response: requests.Response, operation: str, *, scrub: str) -> ProviderError:
    status = response.status_code
    message, code = _error_text(response)
    if scrub:  # a misbehaving server could echo our key back
        message = message.replace(scrub, "[redacted]")
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        return ProviderRateLimitedError(
            f"Trustless Work rate limit: {message}",
            provider=PROVIDER,
            http_status=status,
            retry_after=float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 2.0,
        )
    if status >= 500:
        return ProviderUnavailableError(
            f"Trustless Work failed {operation} ({status}): {message}",
            provider=PROVIDER,
            http_status=status,
            reason_code=code,
        )
    if status in (401, 403):
        return ProviderRejectedError(
            f"Trustless Work refused the API key ({status}): {message}",
            provider=PROVIDER,
            http_status=status,
            reason_code=code,
        )
    return _rejected(message, status, code)


def _error_text(response: requests.Response) -> tuple[str, str]:
    """(message, code) from a Problem Details or a `{message}` body, or the raw text."""
    try:
        body = json_numbers.loads(response.text)
    except ValueError:
        return (response.text.strip()[:300] or response.reason or "no detail"), ""
    if not isinstance(body, dict):
        return str(body)[:300], ""
    text = body.get("detail") or body.get("message") or body.get("title") or body.get("error")
    if isinstance(text, list):
        text = "; ".join(str(t) for t in text)
    return str(text or response.reason or "no detail"), str(body.get("code") or "")
