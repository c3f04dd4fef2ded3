"""Where outbound webhooks may go: the guard against server-side request forgery.

Outside test mode (settings.WEBHOOK_TEST_MODE) a target must be https, and every address
its host name resolves to must be a public one: loopback, private, link-local, carrier-grade
NAT, multicast, reserved and unspecified addresses are refused. The check runs when an
endpoint is saved (literal addresses, obvious local names) and again at each delivery on the
addresses actually resolved; the request then goes to the address that was checked, so a
DNS answer that changes between the check and the connection cannot redirect it.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from orchestrator.errors import ValidationFailedError

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class TargetRefusedError(ValidationFailedError):
    code = "WEBHOOK_TARGET_REFUSED"


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and TLS server name)
    port: int
    path: str  # path and query


def parse_target(url: str) -> Target:
    """Split and check a URL without resolving it.

    Raises:
        TargetRefusedError: not http(s), no host, credentials in it, http or a non-public
            literal address outside test mode.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError("The webhook URL is not valid.", url=url) from exc
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        raise TargetRefusedError("The webhook URL must be an http(s) URL with a host.", url=url)
    if parts.username or parts.password:
        raise TargetRefusedError("The webhook URL must not carry credentials.", url=url)
    if not settings.WEBHOOK_TEST_MODE:
        if scheme != "https":
            raise TargetRefusedError("The webhook URL must use https.", url=url)
        if host.rstrip(".") in _LOCAL_NAMES or host.endswith(".localhost"):
            raise TargetRefusedError("The webhook URL names a local host.", url=url)
        literal = _literal(host)
        if literal is not None and not is_public(literal):
            raise TargetRefusedError("The webhook URL names a non-public address.", url=url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path)


def resolve(target: Target) -> str:
    """The address to connect to: the first one the host resolves to, all of them checked.

    Raises:
        TargetRefusedError: the name does not resolve, or resolves to a non-public address
            (outside test mode).
    """
    literal = _literal(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetRefusedError("The webhook host does not resolve.") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefusedError("The webhook host does not resolve.")
    if not settings.WEBHOOK_TEST_MODE and not all(is_public(a) for a in addresses):
        raise TargetRefusedError("The webhook host resolves to a non-public address.")
    return str(addresses[0])


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
    return address.is_global and not address.is_multicast


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
