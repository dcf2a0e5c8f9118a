"""The signature on every delivery, and the README's snippet that checks it."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chatmeter.webhooks import signing

README = (Path(__file__).parents[2] / "README.md").read_text()
BODY = b'{"id":"evt_1","type":"test"}'
SECRET = "whsec_one"


def readme_verify() -> Callable[..., bool]:
    """The Python snippet under "Webhooks" in the README, run as a receiver would."""
    section = README[README.index("## Webhooks") :]
    [code] = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 5)], re.S)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    return verify  # type: ignore[return-value]


def test_the_signature_is_hmac_sha256_over_the_time_a_dot_and_the_body() -> None:
    expected = hmac.new(b"whsec_one", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signing.header([SECRET], 1700000000, BODY) == f"t=1700000000,v1={expected}"


def test_the_readme_snippet_accepts_a_real_signature_and_refuses_the_rest() -> None:
    verify = readme_verify()
    now = int(time.time())
    header = signing.header([SECRET], now, BODY)
    assert verify(SECRET, header, BODY)
    assert not verify("whsec_other", header, BODY)  # another secret
    assert not verify(SECRET, header, BODY + b" ")  # the body changed
    assert not verify(SECRET, header.replace(f"t={now}", f"t={now + 1}"), BODY)  # time changed
    old = signing.header([SECRET], now - 301, BODY)
    assert not verify(SECRET, old, BODY)  # too old: a replay
    assert not verify(SECRET, signing.header([SECRET], now + 301, BODY), BODY)
    assert not verify(SECRET, "v1=" + header.split("v1=")[1], BODY)  # no time
    assert not verify(SECRET, "", BODY)
    assert not verify(SECRET, f"t={now},t={now},v1=x", BODY)
    # A receiver's own clock can be given: the same header is fresh then, stale later.
    assert verify(SECRET, header, BODY, now=now + 300)
    assert not verify(SECRET, header, BODY, now=now + 301)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    verify = readme_verify()
    now = int(time.time())
    header = signing.header(["whsec_new", "whsec_old"], now, BODY)
    assert header.count("v1=") == 2
    for secret in ("whsec_new", "whsec_old"):
        assert verify(secret, header, BODY)
    assert not verify("whsec_third", header, BODY)


@pytest.mark.parametrize(
    "header",
    ["t=abc,v1=00", "t=,v1=", "garbage", "t=1700000000", "v1=deadbeef"],
)
def test_malformed_headers_never_verify(header: str) -> None:
    assert not readme_verify()(SECRET, header, BODY, now=1700000000)
