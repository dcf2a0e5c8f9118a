"""Idempotency keys: what a caller's key may be, and a request's fingerprint.

Each operation keeps its key on its own row (a hold, a grant, an invoice) with the
fingerprint of the request that made it: the same key with the same request
returns the first result and writes nothing; with a different request it is
refused (409).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chatmeter.errors import InvalidInput

MAX_KEY_LENGTH = 200


def request_hash(request: Any) -> str:
    """A stable fingerprint of a request's content."""
    encoded = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable characters")
    return key
