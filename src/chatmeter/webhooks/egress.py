"""Where a delivery may go: the customer's servers on the internet, never ours.

A webhook URL is typed by a customer, so it must not become a way into the server's
own loopback, private networks or cloud metadata address (SSRF). Checked twice:

- when the URL is saved (``check_url``): HTTPS, a host, no credentials in it, and a
  literal address or a local-only name refused;
- when each delivery is made (``post``): the host is resolved, every address it
  resolves to must be public (an IPv4 address inside IPv6 counts as itself), and the
  connection goes to the address that was checked, not to a second lookup (DNS
  rebinding), with the TLS certificate still checked against the host's name.
  Redirects are not followed, and one deadline bounds the whole attempt (``post``).

``CHATMETER_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` (off by default) lifts both checks and
allows plain HTTP, for an operator whose receivers live on the same network, and for
the tests' receiver on loopback.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from chatmeter.errors import InvalidInput

MAX_URL_LENGTH = 2048
# Names that only ever mean this machine or its own network.
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
# The first bytes of the receiver's answer kept in the delivery log, and at most this
# much of the answer read at all (its head included).
RESPONSE_SNIPPET = 300
MAX_ANSWER = 16_384
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
    """Where one attempt connects: the checked address, and the names TLS and HTTP need."""

    address: Address
    port: int
    https: bool
    host: str  # the URL's host name: the certificate must be for it (SNI)
    host_header: str
    path: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    snippet: str  # the first bytes of the body, for the delivery log


class Failed(Exception):
    """The endpoint could not be reached, or did not answer in time or in HTTP."""


def pin(url: str, *, allow_private: bool) -> Target:
    """Resolve and check ``url``'s host once, for a connection to exactly that address."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve(host, port, allow_private=allow_private)
    shown = f"[{host}]" if ":" in host else host
    return Target(
        address=address,
        port=port,
        https=https,
        host=host,
        host_header=shown if port == (443 if https else 80) else f"{shown}:{port}",
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    allow_private: bool,
) -> Answer:
    """POST ``body`` to ``url``: one HTTP/1.1 request, all of it within ``timeout`` seconds.

    A small client of its own rather than a general one: it connects to the address
    ``pin`` checked (a general client would look the name up again), follows nothing,
    reads no proxy from the environment, and keeps one deadline for the whole attempt
    (connect, TLS, send, the answer's head), so an endpoint that answers a byte at a
    time cannot hold the delivery lane. ``Refused`` or ``Failed`` when there is no answer.
    """
    deadline = time.monotonic() + timeout
    target = pin(url, allow_private=allow_private)
    head = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    request = "\r\n".join(head).encode("latin-1") + body
    try:
        with _connect(target, deadline) as connection:
            connection.settimeout(_left(deadline))
            connection.sendall(request)
            received = _read_answer(connection, deadline)
    except (OSError, ssl.SSLError) as exc:  # socket.timeout is an OSError
        raise Failed(f"{type(exc).__name__}: {exc}") from exc
    return _parse(received)


def _connect(target: Target, deadline: float) -> socket.socket:
    raw = socket.create_connection((str(target.address), target.port), timeout=_left(deadline))
    if not target.https:
        return raw
    try:
        raw.settimeout(_left(deadline))
        # Verified against the host's name, not the address connected to.
        return ssl.create_default_context().wrap_socket(raw, server_hostname=target.host)
    except BaseException:
        raw.close()
        raise


def _read_answer(connection: socket.socket, deadline: float) -> bytes:
    """The answer's head and the first bytes of its body, or whatever came by the deadline."""
    received = b""
    while len(received) < MAX_ANSWER:
        connection.settimeout(_left(deadline))
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
        end = received.find(b"\r\n\r\n")
        if end >= 0 and len(received) - end - 4 >= RESPONSE_SNIPPET:
            break
    return received


def _parse(received: bytes) -> Answer:
    status_line, _, rest = received.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise Failed("the endpoint did not answer in HTTP/1.x")
    _, _, body = rest.partition(b"\r\n\r\n")
    snippet = body[:RESPONSE_SNIPPET].decode("utf-8", "replace").strip()
    return Answer(status=int(parts[1]), snippet=snippet)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no answer within the webhook timeout")
    return left


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
