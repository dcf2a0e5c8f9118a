"""Text that both databases store alike.

PostgreSQL refuses the NUL character (U+0000) in text; SQLite keeps it. A NUL in
what a caller sends was therefore a server error on one database and stored on
the other. Every way in (the API's bodies, the panel's forms, a chat message)
refuses it with the same readable message, before anything is written.
"""

from __future__ import annotations

NUL = "\x00"
NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def has_nul(value: object) -> bool:
    """Whether ``value``, or any text inside a list or mapping of it, holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, list | tuple):
        return any(has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    return False


def check_storable(value: object) -> object:
    """A pydantic field validator: ``value`` as it is, or ``ValueError`` for a NUL."""
    if has_nul(value):
        raise ValueError(f"the text {NUL_MESSAGE}")
    return value
