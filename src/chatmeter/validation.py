"""Validation errors (pydantic's) as sentences about the field they concern: one wording
for the REST API, the CLI and the panel.

A model may name its fields for people (``labels``) and word some errors its own way
(``assistants.schemas.field_message``); everything else reads as here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pydantic_core import ErrorDetails

Describe = Callable[[str, ErrorDetails], str]


def field_name(error: ErrorDetails) -> str:
    """The field an error concerns: its location without the request part (``body``)."""
    parts = [str(part) for part in error["loc"] if part not in ("body", "query", "path")]
    return ".".join(parts)


def readable(name: str, error: ErrorDetails, *, labels: Mapping[str, str] | None = None) -> str:
    """An error as a sentence about the field: ``the name must not be empty``."""
    label = (labels or {}).get(name) or (name.replace("_", " ") if name else "the request")
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "string_too_short":
        return f"{label} must not be empty"
    if kind == "string_too_long":
        return f"{label} must be at most {context['max_length']:,} characters long"
    if kind == "too_long":
        return f"{label} may list at most {context['max_length']:,} items"
    if kind in ("greater_than_equal", "greater_than"):
        return f"{label} must be at least {context.get('ge', context.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"{label} must be at most {context.get('le', context.get('lt'))}"
    if kind == "literal_error":
        return f"{label} must be {context['expected']}"
    if kind == "missing":
        return f"{label} is required"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{label}: {error['msg']}"


def messages(errors: Iterable[ErrorDetails], describe: Describe | None = None) -> dict[str, str]:
    """The first message about each field, in the order the errors came."""
    found: dict[str, str] = {}
    for error in errors:
        name = field_name(error)
        found.setdefault(name, describe(name, error) if describe else readable(name, error))
    return found


def summary(found: Mapping[str, str]) -> str:
    """Every field's message on one line: ``name: ...; temperature: ...``."""
    return "; ".join(f"{name}: {message}" if name else message for name, message in found.items())
