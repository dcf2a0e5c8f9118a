"""The client's address as limits see it: trusted proxies only, IPv6 per /64."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from chatmeter.config import Env, Settings
from chatmeter.http.client import client_address, rate_key


def request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 50000), "headers": headers})


def settings(trusted: str = "") -> Settings:
    return Settings(_env_file=None, env=Env.TEST, trusted_proxies=trusted)


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ("", "127.0.0.1", ["6.6.6.6"], "127.0.0.1"),  # no proxy trusted: header ignored
        ("10.0.0.0/8", "192.0.2.1", ["6.6.6.6"], "192.0.2.1"),  # not from a trusted proxy
        ("10.0.0.0/8", "10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        # The client wrote the left part; the proxy appended the address it saw.
        ("10.0.0.0/8", "10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        # Two trusted hops: the first untrusted from the right is the client.
        ("10.0.0.0/8", "10.0.0.2", ["6.6.6.6, 198.51.100.7, 10.0.0.9"], "198.51.100.7"),
        ("10.0.0.0/8", "10.0.0.2", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # two headers
        ("10.0.0.0/8", "10.0.0.2", ["nonsense, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.0/8", "10.0.0.2", ["198.51.100.7, nonsense"], "10.0.0.2"),  # garbage: stop
        ("10.0.0.0/8", "10.0.0.2", [], "10.0.0.2"),
        ("::1", "::1", ["2001:db8::5"], "2001:db8::5"),
        ("127.0.0.1", "::ffff:127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
    ],
)
def test_the_client_behind_trusted_proxies_only(
    trusted: str, peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_address(request(peer, *forwarded), settings(trusted)) == expected


def test_ipv6_clients_are_counted_per_64_and_ipv4_per_address() -> None:
    assert rate_key("2001:db8:1:2::1") == rate_key("2001:db8:1:2:ffff::3") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("198.51.100.7") == "198.51.100.7"
    assert rate_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert rate_key("unknown") == "unknown"


def test_a_bad_trusted_proxy_setting_stops_the_program() -> None:
    with pytest.raises(ValueError, match="not an IP address or network"):
        settings("10.0.0.0/8, proxy.example.com")
