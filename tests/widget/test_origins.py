"""The rule for where a widget may run: a page's ``Origin`` against allowed domains."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmeter.widget.origins import Site, origin_allowed, parse_origin


@pytest.mark.parametrize(
    ("origin", "domains", "allowed"),
    [
        ("https://example.com", ["example.com"], True),
        ("http://example.com", ["example.com"], True),
        ("https://example.com:8443", ["example.com"], True),  # any port of a listed host
        ("https://EXAMPLE.com", ["example.com"], True),
        ("https://example.com.", ["example.com"], True),
        ("https://www.example.com", ["example.com"], False),
        ("https://www.example.com", ["*.example.com"], True),
        ("https://a.b.example.com", ["*.example.com"], True),
        ("https://example.com", ["*.example.com"], False),  # the apex must be listed itself
        ("https://example.com", ["*.example.com", "example.com"], True),
        ("https://notexample.com", ["example.com", "*.example.com"], False),
        ("https://example.com.evil.net", ["example.com", "*.example.com"], False),
        ("https://evil.net/?example.com", ["example.com"], False),
        ("http://localhost:5000", ["localhost:5000"], True),
        ("http://localhost:5001", ["localhost:5000"], False),
        ("http://localhost", ["localhost:5000"], False),
        ("https://example.com", ["example.com:443"], True),  # default ports are implied
        ("http://example.com", ["example.com:443"], False),
        ("http://127.0.0.1:8123", ["127.0.0.1:8123"], True),
        ("https://shop.example.com:8443", ["*.example.com:8443"], True),
        ("https://shop.example.com", ["*.example.com:8443"], False),
        ("null", ["example.com"], False),
        ("file://example.com", ["example.com"], False),
        ("chrome-extension://abc", ["abc"], False),
        ("https://user@example.com", ["example.com"], False),
        ("https://example.com/path", ["example.com"], False),
        ("https://example.com:99999", ["example.com"], False),
        ("https://.example.com", ["*.example.com"], False),
        ("https://a..example.com", ["*.example.com"], False),
        ("", ["example.com"], False),
        ("https://example.com", [], False),
        ("https://example.com", ["*."], False),
        ("https://example.com", [":443"], False),
    ],
)
def test_an_origin_is_allowed_by_its_host_and_port(
    origin: str, domains: list[str], allowed: bool
) -> None:
    assert origin_allowed(origin, domains) is allowed


def test_an_origin_is_parsed_to_scheme_host_and_port() -> None:
    assert parse_origin("https://Shop.Example.com") == Site("https", "shop.example.com", 443)
    assert parse_origin("http://[::1]:8000") == Site("http", "::1", 8000)
    assert parse_origin("null") is None


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
HOST = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
PORT = st.integers(min_value=1, max_value=65535)


@given(sub=HOST, parent=HOST, scheme=st.sampled_from(["http", "https"]))
def test_a_wildcard_covers_every_subdomain_but_never_its_parent(
    sub: str, parent: str, scheme: str
) -> None:
    assert origin_allowed(f"{scheme}://{sub}.{parent}", [f"*.{parent}"])
    assert not origin_allowed(f"{scheme}://{parent}", [f"*.{parent}"])


@given(host=HOST, other=HOST, prefix=LABEL)
def test_a_plain_domain_covers_that_host_only(host: str, other: str, prefix: str) -> None:
    assert origin_allowed(f"https://{host}", [host])
    assert not origin_allowed(f"https://{prefix}{host}", [host])
    assert not origin_allowed(f"https://{prefix}.{host}", [host])
    assert origin_allowed(f"https://{other}", [host]) is (other == host)


@given(host=HOST, port=PORT, other=PORT)
def test_a_domain_with_a_port_covers_that_port_only(host: str, port: int, other: int) -> None:
    assert origin_allowed(f"http://{host}:{port}", [f"{host}:{port}"])
    assert origin_allowed(f"http://{host}:{other}", [f"{host}:{port}"]) is (other == port)
    assert origin_allowed(f"http://{host}:{other}", [host])


@given(origin=st.text(max_size=60), domains=st.lists(st.text(max_size=30), max_size=3))
def test_any_text_gives_an_answer_not_an_error(origin: str, domains: list[str]) -> None:
    assert origin_allowed(origin, domains) in (True, False)
