"""Where a delivery may go: the customer's servers on the internet, never ours.

A webhook URL is typed by a customer, so it must not become a way into the server's
own loopback, private networks or cloud metadata address (SSRF). Checked twice:

- when the URL is saved (``check_url``): HTTPS, a host, no credentials in it, and a
  literal address or a local-only name refused;
- when each delivery is made (``post``): the host is resolved, every address it
  resolves to must be public (an IPv4 address inside IPv6 counts as itself), and the
  connection goes to the address that was checked, not to a second lookup (DNS
  rebinding), with the TLS certificate still checked against the host's name.
  Redirects are not followed.

``CHATMETER_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` (off by default) lifts both checks and
allows plain HTTP, for an operator whose receivers live on the same network, and for
the tests' receiver on loopback.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from chatmeter.errors import InvalidInput

MAX_URL_LENGTH = 2048
# Names that only ever mean this machine or its own network.
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
# The first bytes of the receiver's answer kept in the delivery log.
RESPONSE_SNIPPET = 300
NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The delivery's destination is not allowed (or cannot be resolved)."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL as it will be stored, or ``InvalidInput`` saying what is wrong with it."""
    url = url.strip()
    if not url:
        raise InvalidInput("Enter the URL of your endpoint.", field="url")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"The URL is longer than {MAX_URL_LENGTH} characters.", field="url")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidInput("The URL may not contain spaces or control characters.", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput("This is not a valid URL.", field="url") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise InvalidInput("The URL must start with https://.", field="url")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput("The URL has no host name.", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "Put no user name or password in the URL; check our signature instead.", field="url"
        )
    if parts.fragment:
        raise InvalidInput("The URL may not have a #fragment.", field="url")
    if not allow_private:
        literal = _literal(host)
        if literal is not None and not is_public(literal):
            raise InvalidInput(
                "The URL points to a private or local address; use your server's public "
                "name or address.",
                field="url",
            )
        lowered = host.lower()
        if lowered == "localhost" or lowered.endswith(LOCAL_SUFFIXES) or "." not in lowered:
            raise InvalidInput(
                "The URL points to a local name; use your server's public name.", field="url"
            )
    del port  # checked above (urlsplit raises for a bad one)
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path or "/", parts.query, ""))


def is_public(address: Address) -> bool:
    """Reachable on the internet: not loopback, private, link-local, shared, reserved…"""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None:
            return is_public(address.teredo[1])
        if address in NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int, *, allow_private: bool) -> Address:
    """The address to connect to; ``Refused`` if any address of ``host`` is not allowed."""
    literal = _literal(host)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from exc
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not found:
        raise Refused(f"{host} resolves to no address")
    for address in found:
        if address.is_multicast or address.is_unspecified:
            raise Refused(f"{host} resolves to {address}, which cannot receive deliveries")
        if not allow_private and not is_public(address):
            raise Refused(f"{host} resolves to {address}, a private or local address")
    return found[0]


@dataclass(frozen=True, slots=True)
class Target:
    """A URL with its host replaced by the checked address, and what TLS and HTTP need."""

    url: str
    host_header: str
    sni_hostname: str | None


def pin(url: str, *, allow_private: bool) -> Target:
    """Resolve and check ``url``'s host once, for a connection to exactly that address."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve(host, port, allow_private=allow_private)
    shown = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit((parts.scheme, f"{shown}:{port}", parts.path, parts.query, ""))
    default_port = port == (443 if https else 80)
    host_name = f"[{host}]" if ":" in host else host
    return Target(
        url=pinned,
        host_header=host_name if default_port else f"{host_name}:{port}",
        sni_hostname=host if https and _literal(host) is None else None,
    )


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
