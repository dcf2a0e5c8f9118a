"""The signature on every delivery (the receiver's check is the README's snippet).

``Chatmeter-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
HMAC-SHA256(secret, ``"<t>." + body``) in lower-case hex. While a rotated secret is
still honoured the header carries a second ``v1``, made with the previous secret, so
a receiver that has either secret accepts the delivery. The timestamp is signed too:
a receiver refuses one far from its own clock, so a captured delivery cannot be
replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

HEADER = "Chatmeter-Signature"
SCHEME = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    """The header's value: the timestamp and one ``v1`` per secret in force."""
    parts = [f"t={timestamp}"]
    parts += [f"{SCHEME}={signature(secret, timestamp, body)}" for secret in secrets]
    return ",".join(parts)
