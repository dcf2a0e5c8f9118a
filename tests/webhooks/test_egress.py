"""Deliveries never reach the server's own networks (SSRF), unless the operator allows it."""

from __future__ import annotations

import ipaddress

import pytest

from chatmeter.errors import InvalidInput
from chatmeter.webhooks import egress

PRIVATE_URLS = [
    "https://127.0.0.1/hook",
    "https://127.1.2.3:8443/hook",
    "https://10.0.0.5/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data",  # cloud metadata
    "https://100.64.0.1/hook",  # shared address space
    "https://0.0.0.0/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",  # IPv4 inside IPv6
    "https://[fd00::1]/hook",
    "https://[fe80::1]/hook",
    "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://localhost/hook",
    "https://api.localhost/hook",
    "https://printer.local/hook",
    "https://metadata.google.internal/computeMetadata/v1",
    "https://intranet/hook",  # a bare name: the local search domain's
    "https://2130706433/hook",  # 127.0.0.1 as one number
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_urls_into_private_networks_are_refused_when_saved(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        egress.check_url(url, allow_private=False)
    assert refused.value.details == {"field": "url"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "must start with https://"),
        ("ftp://example.com/hook", "must start with https://"),
        ("https://user:pass@example.com/hook", "no user name or password"),
        ("https://example.com/hook#frag", "#fragment"),
        ("https://example.com/a b", "spaces"),
        ("https:///nohost", "no host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("", "Enter the URL"),
        ("https://example.com/" + "a" * 2048, "longer than"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        egress.check_url(url, allow_private=False)


def test_a_public_https_url_is_kept_as_typed() -> None:
    assert egress.check_url(" https://hooks.example.com/in?x=1 ", allow_private=False) == (
        "https://hooks.example.com/in?x=1"
    )
    assert egress.check_url("HTTPS://example.com", allow_private=False) == "https://example.com/"


def test_the_operator_setting_allows_loopback_and_plain_http() -> None:
    assert egress.check_url("http://127.0.0.1:9000/h", allow_private=True) == (
        "http://127.0.0.1:9000/h"
    )
    with pytest.raises(InvalidInput):  # still no credentials in the URL
        egress.check_url("http://u:p@127.0.0.1/h", allow_private=True)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:10.0.0.1", "fc00::1", "224.0.0.1"],
)
def test_private_addresses_are_not_public(address: str) -> None:
    assert not egress.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:84e5", "::ffff:8.8.8.8"])
def test_internet_addresses_are_public(address: str) -> None:
    assert egress.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("host", ["localhost", "127.1", "0x7f.0.0.1", "2130706433", "::1"])
def test_at_delivery_every_address_a_host_resolves_to_is_checked(host: str) -> None:
    """A name that passed when saved, or resolves differently later, is checked again."""
    with pytest.raises(egress.Refused):
        egress.resolve(host, 443, allow_private=False)
    assert egress.resolve(host, 443, allow_private=True).is_loopback


def test_the_connection_goes_to_the_checked_address_with_the_name_for_tls() -> None:
    target = egress.pin("https://localhost:8443/in?x=1", allow_private=True)
    assert target.address.is_loopback and target.port == 8443 and target.https
    assert (target.host, target.host_header, target.path) == (
        "localhost",
        "localhost:8443",
        "/in?x=1",
    )
    plain = egress.pin("http://127.0.0.1/in", allow_private=True)
    assert (str(plain.address), plain.port, plain.https, plain.host_header, plain.path) == (
        "127.0.0.1",
        80,
        False,
        "127.0.0.1",
        "/in",
    )
