"""Who is asking: the client's address as limits should see it.

Behind a reverse proxy every request comes from the proxy; the proxy names the
real client in ``X-Forwarded-For``. That header is believed only when the
request comes from an address in ``CHATMETER_TRUSTED_PROXIES``, and only for
the hops that trusted proxies added: anything further left was written by the
client and could be anything. Without the setting the header is ignored.

Limits count IPv6 clients by their /64 network: one subscriber usually has a
whole /64 and can pick a fresh address from it for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from fastapi import Request

from chatmeter.config import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_RATE_PREFIX = 64


def client_address(request: Request, settings: Settings) -> str:
    """The client's IP address: the peer's, or the one a trusted proxy forwarded."""
    peer = request.client.host if request.client else ""
    trusted = settings.trusted_networks
    if not trusted or not _within(peer, trusted):
        return peer or "unknown"
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
    ]
    address = peer
    for hop in reversed(hops):  # from the nearest proxy back towards the client
        if _parse(hop) is None:
            break  # garbage: believe nothing further left
        address = hop
        if not _within(hop, trusted):
            break  # the first untrusted hop is the client
    return address


def rate_key(address: str) -> str:
    """What limits count by: an IPv4 address, or an IPv6 address's /64 network."""
    ip = _parse(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_RATE_PREFIX}", strict=False))
    return str(ip)


def visitor_key(request: Request, settings: Settings) -> str:
    """The key a visitor's requests are counted by."""
    return rate_key(client_address(request, settings))


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    """Whether an address (IPv4-mapped IPv6 included) lies in one of the networks."""
    return _within(address, networks)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _within(address: str, networks: Sequence[Network]) -> bool:
    ip = _parse(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
