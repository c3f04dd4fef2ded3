"""The Trustless Work simulator's test-control API, under /__sandbox (no API key).

Each route calls the simulator method of the same name, so HTTP tests and in-process tests
steer it alike:

    GET  /__sandbox/info                      network, USDC issuer and contract, TW fee address
    POST /__sandbox/reset {seed?}             forget everything
    GET  /__sandbox/config                    POST /__sandbox/config {rateLimit, ...}
    POST /__sandbox/accounts {address, usdc?, sequence?, trustline?}
    GET  /__sandbox/accounts/<address>
    POST /__sandbox/mint {address, amount}
    GET  /__sandbox/clock                     POST /__sandbox/clock/advance {seconds}
    GET  /__sandbox/faults                    POST /__sandbox/faults {kind, method?, path?,
         times?, status?, holdSeconds?, landsAfterRequests?}; DELETE /__sandbox/faults;
         POST /__sandbox/faults/release (answer held requests now)
    GET  /__sandbox/events?since=<seq>        the audit log
    GET  /__sandbox/stats                     requests, submissions per tx, applied per escrow
    GET  /__sandbox/escrows/<contractId>      on-chain state (not the lagging read model)
    GET  /__sandbox/transactions/<hash>       built / pending / applied / failed / unknown
    POST /__sandbox/indexer/flush             bring the read model up to the chain
"""

import re
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from providers import json_numbers
from providers.sandbox.tw_chain import ContractError

if TYPE_CHECKING:
    from providers.sandbox.trustless_work import TrustlessWorkSimulator


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _reply(body: Any, status: int = 200) -> Response:
    text = json_numbers.dumps(_no_floats(body))
    return Response(text, status=status, content_type="application/json")


def _no_floats(value: Any) -> Any:
    """Clock times and settings are floats in here; they travel as exact decimals."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _no_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_floats(v) for v in value]
    return value


def control_response(sim: "TrustlessWorkSimulator", request: Request) -> Response:
    try:
        return _dispatch(sim, request)
    except (ValueError, TypeError, KeyError, ContractError) as exc:
        return _reply({"message": str(exc)}, 400)


def _dispatch(sim: "TrustlessWorkSimulator", request: Request) -> Response:  # noqa: C901
    path, method = request.path.removeprefix("/__sandbox").rstrip("/"), request.method
    body: dict[str, Any] = {}
    if method in ("POST", "PUT") and request.get_data():
        parsed = json_numbers.loads(request.get_data())
        if not isinstance(parsed, dict):
            raise ValueError("The body must be a JSON object.")
        body = {_snake(k): v for k, v in parsed.items()}
    match method, path:
        case "GET", "/info":
            return _reply(
                {
                    "networkPassphrase": sim.network_passphrase,
                    "usdcIssuer": sim.usdc_issuer,
                    "usdcContract": sim.usdc_contract,
                    "twFeeAddress": sim.tw_fee_address,
                    "seed": sim.seed,
                }
            )
        case "POST", "/reset":
            sim.reset(body.get("seed"))
            return _reply({"status": "reset", "seed": sim.seed})
        case "GET", "/config":
            return _reply(asdict(sim.config))
        case "POST", "/config":
            return _reply(asdict(sim.configure(**body)))
        case "POST", "/accounts":
            sequence = body.get("sequence")
            account = sim.create_account(
                body["address"],
                usdc=_amount(body.get("usdc", 0)),
                sequence=int(sequence) if sequence is not None else None,
                trustline=bool(body.get("trustline", True)),
            )
            return _reply(account, 201)
        case "POST", "/mint":
            return _reply(sim.mint(body["address"], _amount(body["amount"])))
        case "GET", "/clock":
            return _reply({"now": sim.now()})
        case "POST", "/clock/advance":
            return _reply({"now": sim.advance_clock(float(body["seconds"]))})
        case "GET", "/faults":
            return _reply(sim.faults())
        case "POST", "/faults":
            kind = body.pop("kind")
            if "hold_seconds" in body:
                body["hold_seconds"] = float(body["hold_seconds"])
            return _reply(sim.add_fault(kind, **body), 201)
        case "DELETE", "/faults":
            sim.clear_faults()
            return _reply({"status": "cleared"})
        case "POST", "/faults/release":
            sim.release_holds()
            return _reply({"status": "released"})
        case "GET", "/events":
            return _reply(sim.events(int(request.args.get("since", "0"))))
        case "GET", "/stats":
            return _reply(sim.stats())
        case "POST", "/indexer/flush":
            sim.flush_indexer()
            return _reply({"status": "flushed"})
    return _lookup(sim, method, path)


def _lookup(sim: "TrustlessWorkSimulator", method: str, path: str) -> Response:
    prefix, _, key = path.rpartition("/")
    found: Any = None
    if method == "GET" and prefix == "/accounts":
        found = sim.account(key)
    elif method == "GET" and prefix == "/escrows":
        found = sim.escrow_state(key)
    elif method == "GET" and prefix == "/transactions":
        found = sim.transaction(key)
    if found is None:
        return _reply({"message": f"Cannot {method} /__sandbox{path}"}, 404)
    return _reply(found)


def _amount(value: object) -> str | int | Decimal:
    if isinstance(value, str | Decimal) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("Amounts are decimal strings or numbers.")
