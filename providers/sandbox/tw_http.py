"""HTTP plumbing of the Trustless Work simulator: routes, error bodies, query helpers."""

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from providers import json_numbers
from providers.sandbox import tw_chain
from providers.sandbox.tw_chain import MULTI, SINGLE, Escrow


class HttpError(Exception):
    """Answer the current request with an error body (in the configured style)."""

    def __init__(self, status: int, message: str | list[str], code: str = "") -> None:
        super().__init__(str(message))
        self.status, self.message, self.code = status, message, code or _default_code(status)


def _default_code(status: int) -> str:
    return {400: "VALIDATION_ERROR", 401: "AUTH_INVALID_CREDENTIAL", 404: "NOT_FOUND"}.get(
        status, "RATE_LIMITED" if status == 429 else "INTERNAL_ERROR"
    )


def url_map() -> Map:
    kinds = "<any('single-release', 'multi-release'):kind>"
    post, put, get = ["POST"], ["PUT"], ["GET"]
    return Map(
        [
            Rule(f"/deployer/{kinds}", methods=post, endpoint="deploy"),
            Rule(f"/escrow/{kinds}/fund-escrow", methods=post, endpoint="fund"),
            Rule(
                f"/escrow/{kinds}/change-milestone-status", methods=post, endpoint="change_status"
            ),
            Rule(f"/escrow/{kinds}/approve-milestone", methods=post, endpoint="approve"),
            Rule(f"/escrow/{kinds}/update-escrow", methods=put, endpoint="update"),
            Rule(f"/escrow/{kinds}/get-multiple-escrow-balance", methods=get, endpoint="balances"),
            Rule(
                "/escrow/single-release/release-funds",
                methods=post,
                endpoint="release",
                defaults={"kind": SINGLE},
            ),
            Rule(
                "/escrow/single-release/dispute-escrow",
                methods=post,
                endpoint="dispute",
                defaults={"kind": SINGLE},
            ),
            Rule(
                "/escrow/single-release/resolve-dispute",
                methods=post,
                endpoint="resolve",
                defaults={"kind": SINGLE},
            ),
            Rule(
                "/escrow/multi-release/release-milestone-funds",
                methods=post,
                endpoint="release",
                defaults={"kind": MULTI},
            ),
            Rule(
                "/escrow/multi-release/dispute-milestone",
                methods=post,
                endpoint="dispute",
                defaults={"kind": MULTI},
            ),
            Rule(
                "/escrow/multi-release/resolve-milestone-dispute",
                methods=post,
                endpoint="resolve",
                defaults={"kind": MULTI},
            ),
            Rule(
                "/escrow/multi-release/withdraw-remaining-funds", methods=post, endpoint="withdraw"
            ),
            Rule("/helper/send-transaction", methods=post, endpoint="send"),
            Rule("/helper/set-trustline", methods=post, endpoint="set_trustline"),
            Rule("/helper/get-escrow-by-contract-ids", methods=get, endpoint="by_contract_ids"),
            Rule("/helper/get-escrows-by-signer", methods=get, endpoint="by_signer"),
            Rule("/helper/get-escrows-by-role", methods=get, endpoint="by_role"),
            Rule("/indexer/update-from-txHash", methods=post, endpoint="update_from_tx"),
        ],
        strict_slashes=False,
    )


REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reply(body: Any, status: int, content_type: str = "application/json") -> Response:
    return Response(json_numbers.dumps(body), status=status, content_type=content_type)


def read_body(request: Request) -> Any:
    try:
        return json_numbers.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "Unexpected token in JSON body") from None


def require(args: Any, name: str) -> str:
    value = args.get(name, "")
    if not value:
        raise HttpError(400, [f"{name} should not be empty"])
    return str(value)


def flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


def filtered(escrow: Escrow, args: Any) -> bool:
    """The read helpers' optional filters (§1.5)."""
    checks: list[tuple[str, Callable[[str], bool]]] = [
        ("engagementId", lambda v: escrow.engagement_id == v),
        ("title", lambda v: v.lower() in escrow.title.lower()),
        ("isActive", lambda v: escrow.is_active == flag(v)),
        ("type", lambda v: escrow.kind == v),
        ("status", lambda v: tw_chain.status_of(escrow) == v),
        ("minAmount", lambda v: tw_chain.to_units(escrow.amount) >= Decimal(v)),
        ("maxAmount", lambda v: tw_chain.to_units(escrow.amount) <= Decimal(v)),
        ("startDate", lambda v: _date(escrow.created_at) >= v),
        ("endDate", lambda v: _date(escrow.created_at) <= v),
    ]
    return all(check(args[name]) for name, check in checks if args.get(name))


def _date(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))
