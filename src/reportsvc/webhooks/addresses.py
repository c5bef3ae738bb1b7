"""Where a webhook may be sent: the rules against server-side request forgery, in one place.

Only http and https URLs; no host that resolves to a loopback, private, link-local or
cloud-metadata address, unless WEBHOOK_ALLOW_PRIVATE_NETWORKS is set (development and
tests). The API checks a URL when the job is submitted (it resolves the host); the sender
checks again at connect time, against each address it is about to dial, since DNS can
answer differently by then (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Final, NamedTuple
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address

# The longest webhook URL accepted.
MAX_URL_LENGTH: Final = 2048

# The instance-metadata services of the clouds. Most sit at link-local 169.254.169.254,
# which the link-local rule refuses anyway; these are the ones that do not.
METADATA_ADDRESSES: Final = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, Google Cloud, Azure, Oracle, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
# Private use that Python's `is_private` does not count: the carrier-grade NAT range
# (RFC 6598), which clouds also use inside their networks.
SHARED_ADDRESS_SPACE: Final = IPv4Network("100.64.0.0/10")
# IPv6 forms that carry an IPv4 address: NAT64 (RFC 6052) and the old IPv4-compatible form.
_NAT64: Final = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE: Final = IPv6Network("::/96")


class AddressRefusedError(OSError):
    """A webhook's host resolved to an address it must not be sent to. An `OSError`, so
    that a refusal at connect time travels the way a failed connection does."""

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, {reason}")
        self.host = host
        self.address = address
        self.reason = reason


class WebhookUrl(NamedTuple):
    url: str
    host: str
    port: int


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why a webhook must not be sent to `address`; None when it may."""
    if isinstance(address, IPv6Address):
        address = IPv6Address(address.compressed.split("%")[0])  # no zone
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback or address.is_unspecified:  # 0.0.0.0 reaches this host too
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private or address in SHARED_ADDRESS_SPACE:
        return "a private address"
    return None


def parse_webhook_url(raw: str) -> WebhookUrl:
    """The URL, if it is one a webhook may be sent to as written (before resolving its
    host). ValueError says what is wrong, in words for the client who sent it."""
    url = raw.strip()
    if not url or len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be 1 to {MAX_URL_LENGTH} characters long")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password (deliveries are signed)")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must name a host")
    return WebhookUrl(url, parts.hostname, port)


Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP address stands for itself)."""
    try:
        return [ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ip_address(str(info[4][0])) for info in infos]


async def check_host(host: str, port: int, resolver: Resolve = resolve) -> None:
    """Raise `AddressRefusedError` if any address of `host` is refused (a host with one
    public and one private address is as suspect as one with a private address only).
    OSError when the host cannot be resolved."""
    for address in await resolver(host, port):
        reason = refusal(address)
        if reason is not None:
            raise AddressRefusedError(host, address, reason)
