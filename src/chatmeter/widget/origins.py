"""Which websites may run an assistant's widget: an ``Origin`` against its allowed domains.

An allowed domain is a host name, optionally with a port: ``example.com``,
``*.example.com`` or ``localhost:5000``.

- ``example.com`` matches that host only, on any port (whoever runs a host
  runs all its ports); ``example.com:8080`` matches that port only.
- ``*.example.com`` matches every subdomain, at any depth, but not
  ``example.com`` itself, which must be listed on its own.
- Only ``http`` and ``https`` origins match; ``null`` (sandboxed frames,
  ``file:`` pages) and anything unparsable never do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class Site(NamedTuple):
    scheme: str
    host: str
    port: int


def parse_origin(origin: str) -> Site | None:
    """``scheme://host[:port]`` as a site, or ``None`` if it is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS or parts.path not in ("", "/"):
        return None
    if parts.username is not None or parts.query or parts.fragment:
        return None
    if not host or "" in host.split("."):
        return None
    return Site(scheme, host, DEFAULT_PORTS[scheme] if port is None else port)


def domain_matches(site: Site, domain: str) -> bool:
    """Whether one allowed domain (``example.com``, ``*.example.com``, ``host:port``)
    covers ``site``."""
    host, _, port = domain.strip().lower().partition(":")
    if port and (not port.isdigit() or int(port) != site.port):
        return False
    host = host.rstrip(".")
    if host.startswith("*."):
        parent = host[2:]
        return bool(parent) and site.host.endswith("." + parent)
    return bool(host) and site.host == host


def origin_allowed(origin: str, domains: Iterable[str]) -> bool:
    """Whether a browser page at ``origin`` may use an assistant allowed on ``domains``."""
    site = parse_origin(origin)
    return site is not None and any(domain_matches(site, d) for d in domains)
