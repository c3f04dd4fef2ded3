"""Sandbox only: what a real network needs done by operators, done against the simulator.

On a real network the escrow parties' accounts must exist (funded with XLM, with a USDC
trustline) and the treasury that funds escrows must hold USDC: operators do that. In
PROVIDERS_MODE=sandbox the Trustless Work simulator has a control API for it, so the
embedded default can deploy, fund and release out of the box: accounts are created on
first use and the treasury is minted test USDC when it runs short. Nothing here runs in
live mode (the setting is forced off there, and every call checks it again).
"""

import logging
from decimal import Decimal

import requests
from django.conf import settings

from providers.clients.errors import ProviderUnavailableError

logger = logging.getLogger(__name__)

TIMEOUT = (3.05, 10.0)
# The treasury is topped up to at least this much above what a funding needs.
TREASURY_FLOAT = Decimal("100000")


def enabled() -> bool:
    return bool(settings.ESCROW_SANDBOX_PROVISIONING) and settings.PROVIDERS_MODE == "sandbox"


def _url(path: str) -> str:
    return f"{settings.TRUSTLESS_WORK_BASE_URL}/__sandbox{path}"


def _call(method: str, path: str, body: dict[str, str] | None = None) -> requests.Response:
    if not enabled():
        raise RuntimeError("Sandbox provisioning is only for PROVIDERS_MODE=sandbox.")
    try:
        return requests.request(method, _url(path), json=body, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ProviderUnavailableError(
            f"The Trustless Work sandbox could not be reached ({type(exc).__name__}).",
            provider="trustless_work",
            outcome_unknown=False,
        ) from None


def _ok(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise ProviderUnavailableError(
            f"The Trustless Work sandbox refused to {what} ({response.status_code}).",
            provider="trustless_work",
            outcome_unknown=False,
        )


def ensure_accounts(addresses: list[str]) -> None:
    """Create each account the simulator does not know yet (never replaces one)."""
    if not enabled():
        return
    for address in dict.fromkeys(a for a in addresses if a):
        found = _call("GET", f"/accounts/{address}")
        if found.status_code == 404:
            _ok(_call("POST", "/accounts", {"address": address}), "create an account")
            logger.info("Sandbox: created Stellar account %s", address)
        else:
            _ok(found, "read an account")


def ensure_usdc(address: str, amount: Decimal) -> None:
    """Mint test USDC to `address` when it holds less than `amount`."""
    if not enabled():
        return
    ensure_accounts([address])
    found = _call("GET", f"/accounts/{address}")
    _ok(found, "read an account")
    held = Decimal(str(found.json()["usdcStroops"])).scaleb(-7)
    if held < amount:
        mint = amount - held + TREASURY_FLOAT
        _ok(_call("POST", "/mint", {"address": address, "amount": str(mint)}), "mint USDC")
        logger.info("Sandbox: minted %s test USDC to %s", mint, address)
