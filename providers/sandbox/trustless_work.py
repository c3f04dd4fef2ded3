"""An offline Trustless Work (V1 REST API) with a simulated Stellar chain behind it.

A WSGI application (werkzeug) serving every V1 path (reference/providers.md §1.3-§1.5), to
be mounted on its own or under "/trustless-work" of the shared sandbox server:

- `x-api-key` on every request (401 otherwise) and 50 requests per 60 s per key (429).
- Build endpoints validate against the simulated chain with the contract's error texts and
  answer 201 `{"status": "SUCCESS", "unsignedTransaction": <genuine XDR>}` (tw_xdr).
- `POST /helper/send-transaction` checks the envelope like the network would (known
  transaction, time bounds, sequence, the required signer's signature under the configured
  passphrase), re-checks the contract rules, then applies it (tw_chain): stroops move
  exactly, fees included, and the signer's sequence is consumed.
- Read helpers answer from an indexer copy that lags the chain (configurable, or until
  `POST /indexer/update-from-txHash`); `validateOnChain=true` reads the chain itself.

Tests steer it through the control API under `/__sandbox/...` (no API key; see
tw_control) or, in the same process, through the same methods on the simulator object:
accounts and USDC, a manual test clock, fault injection, an audit log of events and
exactly-once statistics. Everything random comes from one seed, so a run is repeatable.
"""

import copy
import logging
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from decimal import Decimal
from random import Random
from typing import Any

from stellar_sdk import Asset, Keypair, Network, StrKey, TransactionEnvelope
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from providers.sandbox import tw_chain, tw_http, tw_payloads, tw_xdr
from providers.sandbox.tw_chain import MULTI, SINGLE, Call, Chain, ContractError, Escrow
from providers.sandbox.tw_control import control_response
from providers.sandbox.tw_http import HttpError

logger = logging.getLogger(__name__)

DEFAULT_API_KEY = "sandbox-trustless-work-key"
START_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z: the manual clock's epoch
SUCCESS_MESSAGE = "The transaction has been successfully sent to the Stellar network"
# What Trustless Work answers while a submitted transaction is still settling (it lands).
NOT_COMPLETE_MESSAGE = (
    "Cannot read the transaction's resultMetaXdr: the transaction may not be complete yet"
)
FAULT_KINDS = frozenset(
    {"rate_limit", "server_error", "timeout", "timeout_after_apply", "not_complete_yet"}
    | {"wrong_network"}
)
PAGE_SIZE = 20
MAX_BALANCE_ADDRESSES = 20
_OTHER_NETWORK = {
    Network.TESTNET_NETWORK_PASSPHRASE: Network.PUBLIC_NETWORK_PASSPHRASE,
    Network.PUBLIC_NETWORK_PASSPHRASE: Network.TESTNET_NETWORK_PASSPHRASE,
}


@dataclass
class Config:
    rate_limit: bool = True
    rate_limit_requests: int = 50
    rate_limit_window_seconds: float = 60.0
    # None: the read model catches up only on POST /indexer/update-from-txHash.
    indexer_lag_seconds: float | None = 0.0
    duplicate_submission: str = "success"  # "success" (answer again, no effect) or "error"
    error_style: str = "message"  # "message": {"message", ...}; "problem": RFC 9457
    tx_timeout_seconds: int = 300
    auto_create_accounts: bool = False  # build for unknown accounts as if they existed

    def validate(self) -> None:
        if self.duplicate_submission not in ("success", "error"):
            raise ValueError("duplicate_submission must be 'success' or 'error'")
        if self.error_style not in ("message", "problem"):
            raise ValueError("error_style must be 'message' or 'problem'")


@dataclass
class Fault:
    id: int
    kind: str
    method: str | None = None
    path: str | None = None  # a regular expression searched in the request path
    times: int | None = 1  # None: every matching request
    status: int = 500  # server_error
    hold_seconds: float = 30.0  # timeout kinds: how long the answer is held back
    lands_after_requests: int = 0  # not_complete_yet: the tx lands after this many requests
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method:
            return False
        return not self.path or re.search(self.path, path) is not None


@dataclass
class BuiltTx:
    call: Call
    tx_hash: str
    source: str
    sequence: int
    max_time: int


@dataclass
class Indexed:
    version: int
    escrow: Escrow


class SimClock:
    """Manual by default (moves only when told); "real" follows the wall clock."""

    def __init__(self, mode: str = "manual", start: float = START_TIME) -> None:
        if mode not in ("manual", "real"):
            raise ValueError("clock mode must be 'manual' or 'real'")
        self.mode, self.start, self.offset = mode, start, 0.0

    def now(self) -> float:
        base = time.time() if self.mode == "real" else self.start
        return base + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("The clock only moves forward.")
        self.offset += seconds
        return self.now()


def _units_to_stroops(amount: str | int | Decimal) -> int:
    if isinstance(amount, float):
        raise TypeError("Amounts are exact: pass a str, int or Decimal, not a float.")
    scaled = Decimal(amount) * tw_chain.STROOPS_PER_UNIT
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals.")
    return int(scaled)


class TrustlessWorkSimulator:
    """The simulator: call it as a WSGI app, or drive it through its methods."""

    # State, (re)built by reset().
    seed: int
    clock: SimClock
    config: Config
    usdc_issuer: str
    usdc_contract: str
    tw_fee_address: str
    _rng: Random
    _factory: dict[str, str]
    _wasm_hash: dict[str, bytes]
    _chain: Chain
    _built: dict[str, BuiltTx]  # by tx hash
    _applied: dict[str, dict[str, Any]]  # tx hash -> the SUCCESS body it got
    _failed: dict[str, str]  # tx hash -> contract error (in a ledger, sequence consumed)
    _pending: dict[str, int]  # tx hash -> request count at which it lands
    _tx_escrow: dict[str, str]  # applied tx hash -> contract id
    _index: dict[str, Indexed]  # the read model
    _index_queue: list[tuple[float, str, Indexed]]  # (due time, contract id, snapshot)
    _faults: list[Fault]
    _fault_ids: int
    _calls: defaultdict[str, deque[float]]  # rate limiter: request times per API key
    _events: list[dict[str, Any]]
    _stats: Counter[str]
    _submissions: Counter[str]
    _applied_ops: defaultdict[str, Counter[str]]
    _requests: int
    _version: int  # bumped by every applied transaction

    def __init__(
        self,
        *,
        seed: int = 0,
        network_passphrase: str = Network.TESTNET_NETWORK_PASSPHRASE,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        clock: str = "manual",
        config: Config | None = None,
        usdc_issuer: str | None = None,
    ) -> None:
        """`usdc_issuer`: the USDC the escrows accept (default: an issuer made from the seed;
        the embedded sandbox passes settings.STELLAR_USDC_ISSUER)."""
        self.network_passphrase = network_passphrase
        self._usdc_issuer = usdc_issuer
        self._api_keys = set(api_keys)
        self._clock_mode = clock
        self._default_config = copy.deepcopy(config or Config())
        self._lock = threading.RLock()
        self._release = threading.Event()
        self._urls = tw_http.url_map()
        self.seed = seed
        self.reset(seed)

    # --- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._respond(Request(environ))(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if request.path.startswith("/__sandbox"):
            return control_response(self, request)
        try:
            return self._serve(request)
        except HttpError as exc:
            return self._error(request, exc)
        except Exception:  # a simulator bug: answer like the real API's 500, and say so
            logger.exception(
                "Trustless Work simulator failed on %s %s", request.method, request.path
            )
            return self._error(request, HttpError(500, "Internal server error"))

    def _serve(self, request: Request) -> Response:
        with self._lock:
            self._stats["requests"] += 1
            self._requests += 1
            self._land_due()
            self._run_indexer()
            key = self._authenticate(request)
            fault = self._take_fault(request)
            if fault is not None and fault.kind == "rate_limit":
                raise HttpError(429, "ThrottlerException: Too Many Requests")
            if fault is not None and fault.kind == "server_error":
                raise HttpError(fault.status, "Internal server error")
            self._limit(key)
        if fault is not None and fault.kind == "timeout":
            self._hold(fault)
            raise HttpError(504, "Gateway Timeout")
        with self._lock:
            response = self._route(request, fault)
        if fault is not None and fault.kind == "timeout_after_apply":
            self._hold(fault)
        return response

    def _route(self, request: Request, fault: Fault | None) -> Response:
        try:
            endpoint, args = self._urls.bind_to_environ(request.environ).match()
        except HTTPException:
            raise HttpError(404, f"Cannot {request.method} {request.path}") from None
        handler = getattr(self, f"_api_{endpoint}")
        try:
            result: Response = handler(request, fault=fault, **args)
        except tw_payloads.PayloadError as exc:
            raise HttpError(400, exc.messages) from None
        except ContractError as exc:
            raise HttpError(400, exc.message, exc.code) from None
        return result

    def _authenticate(self, request: Request) -> str:
        key = request.headers.get("x-api-key", "")
        if not key:
            raise HttpError(401, "Missing API key (x-api-key header)", "AUTH_CREDENTIAL_MISSING")
        if key not in self._api_keys:
            raise HttpError(401, "Invalid API key", "AUTH_INVALID_CREDENTIAL")
        return key

    def _limit(self, key: str) -> None:
        if not self.config.rate_limit:
            return
        now, window = self.clock.now(), self._calls[key]
        while window and window[0] <= now - self.config.rate_limit_window_seconds:
            window.popleft()
        if len(window) >= self.config.rate_limit_requests:
            self._stats["rate_limited"] += 1
            raise HttpError(429, "ThrottlerException: Too Many Requests")
        window.append(now)

    def _take_fault(self, request: Request) -> Fault | None:
        for fault in self._faults:
            if fault.matches(request.method, request.path):
                fault.hits += 1
                self._log("fault", kind=fault.kind, method=request.method, path=request.path)
                return fault
        return None

    def _hold(self, fault: Fault) -> None:
        """Keep the answer back (outside the state lock) until released or timed out."""
        self._release.wait(timeout=fault.hold_seconds)

    def _error(self, request: Request, exc: HttpError) -> Response:
        phrase = tw_http.REASONS.get(exc.status, "Error")
        if self.config.error_style == "problem":
            detail = "; ".join(exc.message) if isinstance(exc.message, list) else exc.message
            body: dict[str, Any] = {
                "type": f"https://docs.trustlesswork.com/errors/{exc.code.lower()}",
                "title": phrase,
                "status": exc.status,
                "code": exc.code,
                "detail": detail,
                "instance": request.path,
            }
            return tw_http.reply(body, exc.status, content_type="application/problem+json")
        return tw_http.reply(
            {"message": exc.message, "error": phrase, "statusCode": exc.status}, exc.status
        )

    # --- Build endpoints ------------------------------------------------------------------------

    def _api_deploy(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        call = tw_payloads.deploy(tw_http.read_body(request), kind)
        if call.escrow is None:
            raise HttpError(400, "escrow should not be empty")
        self._check_trustline(call.escrow.trustline_address)
        salt = self._rng.randbytes(32)
        contract_id = tw_xdr.contract_id_for(call.signer, salt, self.network_passphrase)
        call.escrow.contract_id = contract_id
        call = Call(
            op="deploy", contract_id=contract_id, kind=kind, signer=call.signer, escrow=call.escrow
        )
        self._ensure_account(call.signer)
        tw_chain.check(self._chain, call)
        function, args = tw_xdr.deploy_invocation(
            call, wasm_hash=self._wasm_hash[kind], salt=salt, token=self.usdc_contract
        )
        return self._built_response(call, self._factory[kind], function, args)

    def _api_fund(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        call = tw_payloads.fund(tw_http.read_body(request), kind)
        # The API looks the escrow up in its indexer: unindexed means "Escrow not found".
        indexed = self._index.get(call.contract_id)
        if indexed is None:
            raise ContractError("EscrowNotFound")
        self._check_kind(call)
        call = Call(
            op=call.op,
            contract_id=call.contract_id,
            kind=kind,
            signer=call.signer,
            amount=call.amount,
            expected=indexed.escrow.properties(),
        )
        self._ensure_account(call.signer)
        tw_chain.check(self._chain, call)
        function, args = tw_xdr.invocation(
            call,
            tw_fee_address=self.tw_fee_address,
            token=self.usdc_contract,
            fund_struct=indexed.escrow,
        )
        return self._built_response(call, call.contract_id, function, args)

    def _invoke(self, call: Call) -> Response:
        self._check_kind(call)
        self._ensure_account(call.signer)
        tw_chain.check(self._chain, call)
        function, args = tw_xdr.invocation(
            call, tw_fee_address=self.tw_fee_address, token=self.usdc_contract
        )
        return self._built_response(call, call.contract_id, function, args)

    def _api_change_status(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        return self._invoke(tw_payloads.change_status(tw_http.read_body(request), kind))

    def _api_approve(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        return self._invoke(tw_payloads.approve(tw_http.read_body(request), kind))

    def _api_release(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        return self._invoke(tw_payloads.release(tw_http.read_body(request), kind))

    def _api_dispute(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        return self._invoke(tw_payloads.dispute(tw_http.read_body(request), kind))

    def _api_resolve(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        op = "resolve_milestone_dispute" if kind == MULTI else "resolve_dispute"
        return self._invoke(tw_payloads.resolve(tw_http.read_body(request), kind, op=op))

    def _api_withdraw(self, request: Request, *, fault: Fault | None) -> Response:
        call = tw_payloads.resolve(tw_http.read_body(request), MULTI, op="withdraw_remaining_funds")
        return self._invoke(call)

    def _api_update(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        call = tw_payloads.update(tw_http.read_body(request), kind)
        if call.escrow is not None:
            self._check_trustline(call.escrow.trustline_address)
        return self._invoke(call)

    def _check_kind(self, call: Call) -> None:
        escrow = self._chain.escrows.get(call.contract_id)
        if escrow is not None and escrow.kind != call.kind:
            raise HttpError(
                400, f"The contract {call.contract_id} is a {escrow.kind} escrow", "ESCROW_TYPE"
            )

    def _check_trustline(self, address: str) -> None:
        if address not in (self.usdc_issuer, self.usdc_contract):
            raise HttpError(
                400,
                f"Unsupported trustline {address}: this network's USDC is issued by "
                f"{self.usdc_issuer}",
                "ESCROW_UNSUPPORTED_TRUSTLINE",
            )

    def _ensure_account(self, address: str) -> None:
        if address not in self._chain.accounts and self.config.auto_create_accounts:
            self._new_account(address, usdc=0, sequence=None, trustline=True)

    def _built_response(
        self, call: Call, contract: str, function: str, args: list[Any]
    ) -> Response:
        account = self._chain.account(call.signer)
        max_time = int(self.clock.now()) + self.config.tx_timeout_seconds
        envelope = tw_xdr.build_envelope(
            source=call.signer,
            current_sequence=account.sequence,
            contract_id=contract,
            function=function,
            args=args,
            min_time=0,
            max_time=max_time,
            network_passphrase=self.network_passphrase,
        )
        tx_hash = envelope.hash_hex()
        self._built[tx_hash] = BuiltTx(call, tx_hash, call.signer, account.sequence + 1, max_time)
        self._stats["built"] += 1
        self._log("tx.built", op=call.op, contractId=call.contract_id, txHash=tx_hash)
        return tw_http.reply({"status": "SUCCESS", "unsignedTransaction": envelope.to_xdr()}, 201)

    # --- Submission -----------------------------------------------------------------------------

    def _api_send(self, request: Request, *, fault: Fault | None) -> Response:
        fields = tw_payloads.Fields(tw_http.read_body(request))
        signed_xdr = fields.text("signedXdr")
        fields.done()
        try:
            envelope = TransactionEnvelope.from_xdr(signed_xdr, self.network_passphrase)
        except Exception:  # untrusted bytes: any decoding failure is a bad request
            raise HttpError(400, "signedXdr is not a valid transaction envelope") from None
        tx_hash = envelope.hash_hex()
        self._submissions[tx_hash] += 1
        self._log("tx.submitted", txHash=tx_hash)
        if tx_hash in self._applied:
            if self.config.duplicate_submission == "success":
                return tw_http.reply(self._applied[tx_hash], 201)
            return self._failed_response(tx_hash, "tx_bad_seq")
        if tx_hash in self._failed:
            return self._failed_response(tx_hash, "tx_bad_seq")
        if tx_hash in self._pending:
            raise HttpError(500, NOT_COMPLETE_MESSAGE)
        built = self._built.get(tx_hash)
        if built is None:
            return self._failed_response(
                tx_hash, "tx_bad_auth", "unknown transaction: not built here, or modified since"
            )
        wrong_network = fault is not None and fault.kind == "wrong_network"
        problem = self._precheck(built, signed_xdr, envelope, wrong_network=wrong_network)
        if problem:
            return self._failed_response(tx_hash, problem)
        if fault is not None and fault.kind == "not_complete_yet":
            self._pending[tx_hash] = self._requests + fault.lands_after_requests
            self._land_due()
            raise HttpError(500, NOT_COMPLETE_MESSAGE)
        status, body = self._land(built)
        return tw_http.reply(body, status)

    def _precheck(
        self, built: BuiltTx, signed_xdr: str, envelope: TransactionEnvelope, *, wrong_network: bool
    ) -> str:
        """The network's checks before a transaction enters a ledger ("" when it passes)."""
        if self.clock.now() > built.max_time:
            return "tx_too_late"
        if self._chain.account(built.source).sequence + 1 != built.sequence:
            return "tx_bad_seq"
        if wrong_network:
            other = _OTHER_NETWORK.get(self.network_passphrase, Network.TESTNET_NETWORK_PASSPHRASE)
            envelope = TransactionEnvelope.from_xdr(signed_xdr, other)
        if not tw_xdr.signed_by(envelope, built.source):
            return "tx_bad_auth"
        return ""

    def _land(self, built: BuiltTx) -> tuple[int, dict[str, Any]]:
        """Put the transaction in a ledger: it consumes the sequence, then runs the call."""
        account = self._chain.account(built.source)
        if account.sequence + 1 != built.sequence:
            self._log("tx.rejected", txHash=built.tx_hash, reason="tx_bad_seq")
            return 400, {"status": "FAILED", "message": "Transaction failed: tx_bad_seq"}
        account.sequence = built.sequence
        call = built.call
        try:
            escrow = tw_chain.apply(self._chain, call, now=self.clock.now())
        except ContractError as exc:
            self._failed[built.tx_hash] = exc.message
            self._log("tx.failed", op=call.op, contractId=call.contract_id, txHash=built.tx_hash)
            return 400, {"status": "FAILED", "message": f"Transaction failed: {exc.message}"}
        self._version += 1
        self._applied_ops[call.contract_id][call.op] += 1
        self._tx_escrow[built.tx_hash] = call.contract_id
        self._schedule_index(escrow)
        body: dict[str, Any] = {"status": "SUCCESS", "message": SUCCESS_MESSAGE}
        if call.op in ("deploy", "update_escrow"):
            body["contractId"] = call.contract_id
            body["escrow"] = tw_chain.escrow_json(escrow)
        self._applied[built.tx_hash] = body
        self._log(
            "tx.applied",
            op=call.op,
            contractId=call.contract_id,
            txHash=built.tx_hash,
            balance=escrow.balance,
        )
        return 201, body

    def _failed_response(self, tx_hash: str, reason: str, detail: str = "") -> Response:
        self._log("tx.rejected", txHash=tx_hash, reason=reason)
        message = f"Transaction failed: {reason}" + (f" ({detail})" if detail else "")
        if self.config.error_style == "problem":
            raise HttpError(400, message, "STELLAR_TX_FAILED")
        return tw_http.reply({"status": "FAILED", "message": message}, 400)

    def _land_due(self) -> None:
        """Transactions that were "not complete yet" land once enough requests went by."""
        for tx_hash, due in list(self._pending.items()):
            if self._requests >= due:
                del self._pending[tx_hash]
                self._land(self._built[tx_hash])

    # --- Indexer and reads ----------------------------------------------------------------------

    def _schedule_index(self, escrow: Escrow) -> None:
        lag = self.config.indexer_lag_seconds
        snapshot = Indexed(self._version, copy.deepcopy(escrow))
        if lag is not None and lag <= 0:
            self._index_now(escrow.contract_id, snapshot)
        elif lag is not None:
            self._index_queue.append((self.clock.now() + lag, escrow.contract_id, snapshot))

    def _run_indexer(self) -> None:
        now, waiting = self.clock.now(), []
        for due, contract_id, snapshot in self._index_queue:
            if due <= now:
                self._index_now(contract_id, snapshot)
            else:
                waiting.append((due, contract_id, snapshot))
        self._index_queue = waiting

    def _index_now(self, contract_id: str, snapshot: Indexed) -> None:
        current = self._index.get(contract_id)
        if current is None or current.version < snapshot.version:
            self._index[contract_id] = snapshot
            self._log("indexer.updated", contractId=contract_id, version=snapshot.version)

    def _api_update_from_tx(self, request: Request, *, fault: Fault | None) -> Response:
        fields = tw_payloads.Fields(tw_http.read_body(request))
        tx_hash = fields.text("txHash")
        fields.done()
        contract_id = self._tx_escrow.get(tx_hash)
        if contract_id is None:
            raise HttpError(404, f"Transaction {tx_hash} not found")
        escrow = self._chain.escrows[contract_id]
        self._index_now(contract_id, Indexed(self._version, copy.deepcopy(escrow)))
        return tw_http.reply({"status": "SUCCESS", "message": "The escrow has been updated"}, 201)

    def _read(self, contract_id: str, on_chain: bool) -> Escrow | None:
        if on_chain:
            return self._chain.escrows.get(contract_id)
        indexed = self._index.get(contract_id)
        return indexed.escrow if indexed else None

    def _api_by_contract_ids(self, request: Request, *, fault: Fault | None) -> Response:
        args = request.args
        tw_http.require(args, "signer")
        ids = args.getlist("contractIds[]") + args.getlist("contractIds")
        if not ids:
            raise HttpError(400, ["contractIds should not be empty"])
        on_chain = tw_http.flag(args.get("validateOnChain"))
        found = [self._read(cid, on_chain) for cid in ids]
        return tw_http.reply([tw_chain.escrow_json(e) for e in found if e is not None], 200)

    def _api_by_signer(self, request: Request, *, fault: Fault | None) -> Response:
        signer = tw_http.require(request.args, "signer")
        return self._listing(request, lambda e: e.signer == signer)

    def _api_by_role(self, request: Request, *, fault: Fault | None) -> Response:
        role, address = (
            tw_http.require(request.args, "role"),
            tw_http.require(request.args, "roleAddress"),
        )
        if role not in (*tw_chain.ROLE_NAMES, "signer"):
            raise HttpError(400, [f"role must be one of {', '.join(tw_chain.ROLE_NAMES)}, signer"])

        def holds(escrow: Escrow) -> bool:
            if role == "signer":
                return escrow.signer == address
            receivers = {escrow.receiver_of(m) for m in escrow.milestones}
            return escrow.roles.get(role) == address or (
                role == "receiver" and address in receivers
            )

        return self._listing(request, holds)

    def _listing(self, request: Request, keep: Callable[[Escrow], bool]) -> Response:
        args, on_chain = request.args, tw_http.flag(request.args.get("validateOnChain"))
        escrows = [
            self._chain.escrows[cid] if on_chain else item.escrow
            for cid, item in self._index.items()
        ]
        try:
            escrows = [e for e in escrows if keep(e) and tw_http.filtered(e, args)]
        except ArithmeticError:  # decimal.InvalidOperation for a non-numeric amount filter
            raise HttpError(400, ["minAmount and maxAmount must be numbers"]) from None
        order_by = args.get("orderBy", "createdAt")
        key = {"updatedAt": "updated_at", "amount": "amount"}.get(order_by, "created_at")
        escrows.sort(key=lambda e: getattr(e, key), reverse=args.get("orderDirection") != "asc")
        page = int(args["page"]) if args.get("page", "").isdigit() else 1
        page = max(page, 1)
        chunk = escrows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return tw_http.reply([tw_chain.escrow_json(e) for e in chunk], 200)

    def _api_balances(self, request: Request, *, kind: str, fault: Fault | None) -> Response:
        tw_http.require(request.args, "signer")
        addresses = request.args.getlist("addresses[]") + request.args.getlist("addresses")
        if len(addresses) > MAX_BALANCE_ADDRESSES:
            raise ContractError("TooManyEscrowsRequested")
        balances = []
        for address in addresses:
            escrow = self._chain.escrows.get(address)
            if escrow is None:
                raise ContractError("EscrowNotFound")
            balances.append({"address": address, "balance": tw_chain.to_units(escrow.balance)})
        return tw_http.reply(balances, 200)

    def _api_set_trustline(self, request: Request, *, fault: Fault | None) -> Response:
        # Legacy testnet helper that takes a secret key; it is never echoed or logged.
        fields = tw_payloads.Fields(tw_http.read_body(request))
        secret = fields.text("sourceSecretKey")
        fields.done()
        if not StrKey.is_valid_ed25519_secret_seed(secret):
            raise HttpError(400, ["sourceSecretKey must be a valid secret key"])
        address = Keypair.from_secret(secret).public_key
        self._chain.account(address).trustline = True
        self._log("account.trustline", address=address)
        return tw_http.reply({"status": "SUCCESS", "message": "Trustline set"}, 201)

    # --- The Python control API (tw_control serves the same over HTTP) --------------------------

    def reset(self, seed: int | None = None) -> None:
        """Forget everything (chain, built txs, faults, config) and start again from `seed`."""
        with self._lock:
            self.seed = self.seed if seed is None else seed
            self._rng = Random(self.seed)  # noqa: S311 - repeatable, not secret
            self.clock = SimClock(self._clock_mode)
            self.config = copy.deepcopy(self._default_config)
            made_up = Keypair.from_raw_ed25519_seed(self._rng.randbytes(32)).public_key
            self.usdc_issuer = self._usdc_issuer or made_up
            self.usdc_contract = Asset("USDC", self.usdc_issuer).contract_id(
                self.network_passphrase
            )
            self.tw_fee_address = Keypair.from_raw_ed25519_seed(self._rng.randbytes(32)).public_key
            self._factory = {
                kind: StrKey.encode_contract(self._rng.randbytes(32)) for kind in (SINGLE, MULTI)
            }
            self._wasm_hash = {kind: self._rng.randbytes(32) for kind in (SINGLE, MULTI)}
            self._chain = Chain(tw_fee_address=self.tw_fee_address)
            self._built = {}
            self._applied = {}
            self._failed = {}
            self._pending = {}
            self._tx_escrow = {}
            self._index = {}
            self._index_queue = []
            self._faults = []
            self._fault_ids = 0
            self._calls = defaultdict(deque)
            self._events = []
            self._stats = Counter()
            self._submissions = Counter()
            self._applied_ops = defaultdict(Counter)
            self._requests = 0
            self._version = 0
            self._new_account(self.tw_fee_address, usdc=0, sequence=None, trustline=True)
        self.release_holds()

    def configure(self, **changes: Any) -> Config:
        with self._lock:
            updated = copy.deepcopy(self.config)
            for name, value in changes.items():
                if not hasattr(updated, name):
                    raise ValueError(f"Unknown setting {name!r}.")
                setattr(updated, name, value)
            updated.validate()
            self.config = updated
            return copy.deepcopy(updated)

    def add_api_key(self, key: str) -> None:
        with self._lock:
            self._api_keys.add(key)

    def create_account(
        self,
        address: str,
        *,
        usdc: str | int | Decimal = 0,
        sequence: int | None = None,
        trustline: bool = True,
    ) -> dict[str, Any]:
        """Create (or replace) an account holding `usdc` USDC."""
        if not StrKey.is_valid_ed25519_public_key(address):
            raise ValueError(f"{address!r} is not a Stellar account id.")
        with self._lock:
            self._new_account(
                address, usdc=_units_to_stroops(usdc), sequence=sequence, trustline=trustline
            )
            return self._account_json(address)

    def _new_account(
        self, address: str, *, usdc: int, sequence: int | None, trustline: bool
    ) -> None:
        if sequence is None:
            sequence = self._rng.randrange(1_000, 100_000) << 32
        self._chain.accounts[address] = tw_chain.Account(address, sequence, usdc, trustline)
        self._log("account.created", address=address, usdc=usdc)

    def mint(self, address: str, amount: str | int | Decimal) -> dict[str, Any]:
        """Credit `amount` USDC to an existing account."""
        stroops = _units_to_stroops(amount)
        if stroops <= 0:
            raise ValueError("Mint a positive amount.")
        with self._lock:
            account = self._chain.account(address)
            if not account.trustline:
                raise ContractError("TrustlineMissing", address)
            account.usdc += stroops
            self._log("account.minted", address=address, usdc=stroops)
            return self._account_json(address)

    def account(self, address: str) -> dict[str, Any] | None:
        with self._lock:
            return self._account_json(address) if address in self._chain.accounts else None

    def balance(self, address: str) -> Decimal:
        """USDC held by an account or an escrow contract."""
        with self._lock:
            if address in self._chain.escrows:
                return tw_chain.to_units(self._chain.escrows[address].balance)
            return tw_chain.to_units(self._chain.account(address).usdc)

    def stroops(self, address: str) -> int:
        with self._lock:
            if address in self._chain.escrows:
                return self._chain.escrows[address].balance
            return self._chain.account(address).usdc

    def _account_json(self, address: str) -> dict[str, Any]:
        account = self._chain.accounts[address]
        return {
            "address": address,
            "sequence": str(account.sequence),
            "usdc": tw_chain.to_units(account.usdc),
            "usdcStroops": account.usdc,
            "trustline": account.trustline,
        }

    def now(self) -> float:
        with self._lock:
            return self.clock.now()

    def advance_clock(self, seconds: float) -> float:
        with self._lock:
            now = self.clock.advance(seconds)
            self._log("clock.advanced", seconds=seconds)
            self._run_indexer()
            return now

    def add_fault(
        self,
        kind: str,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
        status: int = 500,
        hold_seconds: float = 30.0,
        lands_after_requests: int = 0,
    ) -> dict[str, Any]:
        """Make the next `times` matching requests misbehave (None: all of them)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}.")
        if path is not None:
            re.compile(path)
        with self._lock:
            self._fault_ids += 1
            fault = Fault(
                self._fault_ids,
                kind,
                method,
                path,
                times,
                status,
                hold_seconds,
                lands_after_requests,
            )
            self._faults.append(fault)
            return asdict(fault)

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []
        self.release_holds()

    def release_holds(self) -> None:
        """Let every held ("timeout") request answer now."""
        release, self._release = self._release, threading.Event()
        release.set()

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._events if e["seq"] > since]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._stats["requests"],
                "built": self._stats["built"],
                "rateLimited": self._stats["rate_limited"],
                "submissions": dict(self._submissions),
                "applied": {cid: dict(ops) for cid, ops in self._applied_ops.items()},
                "pending": sorted(self._pending),
            }

    def applied_count(self, contract_id: str, op: str) -> int:
        """How many `op` transactions (e.g. "fund_escrow") were applied to the escrow."""
        with self._lock:
            return self._applied_ops[contract_id][op]

    def submissions(self, tx_hash: str) -> int:
        with self._lock:
            return self._submissions[tx_hash]

    def escrow_state(self, contract_id: str) -> dict[str, Any] | None:
        """The escrow as it is on chain (not the lagging read model), amounts in stroops too."""
        with self._lock:
            escrow = self._chain.escrows.get(contract_id)
            if escrow is None:
                return None
            body = tw_chain.escrow_json(escrow)
            body["balanceStroops"] = escrow.balance
            body["amountStroops"] = escrow.amount
            body["indexedVersion"] = (
                self._index[contract_id].version if contract_id in self._index else None
            )
            return body

    def transaction(self, tx_hash: str) -> dict[str, Any]:
        with self._lock:
            state = (
                "applied"
                if tx_hash in self._applied
                else "failed"
                if tx_hash in self._failed
                else "pending"
                if tx_hash in self._pending
                else "built"
                if tx_hash in self._built
                else "unknown"
            )
            built = self._built.get(tx_hash)
            return {
                "hash": tx_hash,
                "state": state,
                "op": built.call.op if built else None,
                "contractId": built.call.contract_id if built else None,
                "submissions": self._submissions[tx_hash],
                "error": self._failed.get(tx_hash),
            }

    def flush_indexer(self) -> None:
        """Bring the read model up to the chain now."""
        with self._lock:
            for contract_id, escrow in self._chain.escrows.items():
                self._index_now(contract_id, Indexed(self._version, copy.deepcopy(escrow)))
            self._index_queue = []

    def _log(self, event: str, **details: Any) -> None:
        self._events.append(
            {"seq": len(self._events) + 1, "at": self.clock.now(), "type": event, **details}
        )
