"""An assistant's settings form: posted text to ``AssistantFields``, and its errors in words.

The rules themselves live in ``AssistantFields`` (the API and the CLI use the
same model); this module only turns form text into the types the model expects
and the model's complaints into sentences naming the field. The ranges shown
in the form's hints come from the model's JSON schema, so they cannot drift.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.errors import ChatmeterError, InvalidInput
from chatmeter.llm.catalog import ModelChoice, parse_entry
from chatmeter.panel.deps import sentence
from chatmeter.panel.rendering import form_text

# Far above any field's own limit: only a guard against megabytes of form text.
RAW_LIMIT = 20_000

LABELS = {
    "name": "the name",
    "instructions": "the instructions",
    "model": "the model",
    "temperature": "the temperature",
    "max_tokens": "the response cap",
    "passages": "the number of passages",
    "context_budget": "the context budget",
    "welcome_message": "the welcome message",
    "widget_title": "the widget title",
    "widget_color": "the colour",
    "widget_position": "the position",
    "allowed_domains": "the allowed websites",
    "daily_token_cap": "the daily token cap",
    "turns_per_conversation": "the questions per conversation",
    "show_sources": "the sources shown",
}
WHOLE_NUMBERS = (
    "max_tokens",
    "passages",
    "context_budget",
    "daily_token_cap",
    "turns_per_conversation",
)
NUMBERS = ("temperature",)
CREATE_FIELDS = ("name", "widget_title", "welcome_message", "instructions")
SETTINGS_FIELDS = tuple(LABELS)

_WHOLE = re.compile(r"[+-]?\d{1,30}")
_DECIMAL = re.compile(r"[+-]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})")
_DOMAIN_SEPARATORS = re.compile(r"[\s,]+")


class FormProblem(InvalidInput):
    """Bad values in a form: ``errors`` holds a message per field, the first is the message."""

    def __init__(self, errors: dict[str, str]) -> None:
        field, message = next(iter(errors.items()))
        super().__init__(message, field=field)
        self.errors = errors


@functools.cache
def limits() -> dict[str, dict[str, Any]]:
    """Each field's bounds from ``AssistantFields``'s schema: min, max, max_length, max_items."""
    properties = AssistantFields.model_json_schema()["properties"]
    return {name: _bounds(schema) for name, schema in properties.items()}


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for child in schema.get("anyOf", []):
        found |= _bounds(child)
    keys = {"minimum": "min", "ge": "min", "maximum": "max", "le": "max"}
    keys |= {"maxLength": "max_length", "maxItems": "max_items"}
    return found | {alias: schema[key] for key, alias in keys.items() if key in schema}


def number_message(name: str) -> str:
    bounds = limits()[name]
    low, high = bounds["min"], bounds["max"]
    if name in WHOLE_NUMBERS:
        return f"{LABELS[name]} must be a whole number from {low:,} to {high:,}"
    return f"{LABELS[name]} must be a number from {low:g} to {high:g}"


def parse_form(form: Any, names: tuple[str, ...]) -> AssistantFields:
    """The fields of ``names`` that the form carries, validated; raises ``FormProblem``.

    A field the form does not carry stays as it is.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        if name not in form:
            continue
        try:
            values[name] = _typed(name, form_text(form, name, limit=RAW_LIMIT))
        except InvalidInput as exc:
            errors[name] = exc.message
    if "model" in values:  # one choice from the list of models names provider and model
        try:
            choice = parse_entry(values["model"])
            values["provider"], values["model"] = choice.provider, choice.model
        except ValueError:
            asked = values.pop("model")[:100]
            errors["model"] = f"the model {asked!r} is not offered on this server"
    if not errors:
        try:
            return AssistantFields(**values)
        except ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else "name"
                errors.setdefault(name, readable(name, error))
    raise FormProblem(errors)


def sent_text(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The text fields as they were sent, to show the form again as the customer left it."""
    return {name: value[:RAW_LIMIT] for name in names if isinstance(value := form.get(name), str)}


def field_errors(exc: ChatmeterError) -> dict[str, str]:
    """The message to show beside each field a refusal names."""
    if isinstance(exc, FormProblem):
        errors = exc.errors
    elif isinstance(field := exc.details.get("field"), str):
        errors = {field: exc.message}
    else:
        errors = {}
    return {name: sentence(message) for name, message in errors.items()}


def _typed(name: str, text: str) -> Any:
    """Form text as the type ``AssistantFields`` expects; only the shape is checked here."""
    if name in WHOLE_NUMBERS:
        if not _WHOLE.fullmatch(text.strip()):
            raise InvalidInput(number_message(name))
        return int(text.strip())
    if name in NUMBERS:
        if not _DECIMAL.fullmatch(text.strip()):
            raise InvalidInput(number_message(name))
        return float(text.strip())
    if name == "allowed_domains":
        return [d for d in _DOMAIN_SEPARATORS.split(text) if d]
    return text


def readable(name: str, error: ErrorDetails) -> str:
    """A validation error of ``AssistantFields`` as a sentence about the field."""
    label = LABELS.get(name, name.replace("_", " "))
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "string_too_short":
        return f"{label} must not be empty"
    if kind == "string_too_long":
        return f"{label} must be at most {context['max_length']:,} characters long"
    if kind == "too_long":
        return f"list at most {context['max_length']:,} allowed websites"
    if name in WHOLE_NUMBERS + NUMBERS:
        return number_message(name)
    if kind == "string_pattern_mismatch" and name == "widget_color":
        return f"{label} must be a colour code such as #0f766e"
    if kind == "literal_error":
        return f"{label} must be {context['expected']}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{label}: {error['msg']}"


def form_of(assistant: Assistant | None) -> dict[str, str]:
    """The settings form's text for an assistant, or a new one's defaults."""
    values = dict(assistants.DEFAULTS) | {"name": ""}
    if assistant is not None:
        values = {name: getattr(assistant, name) for name in SETTINGS_FIELDS}
        values["allowed_domains"] = assistant.domains
    provider = assistant.provider if assistant is not None else values["provider"]
    values["model"] = ModelChoice(provider, values["model"]).value
    text = {name: "" if value is None else str(value) for name, value in values.items()}
    text["allowed_domains"] = "\n".join(values["allowed_domains"])
    text["temperature"] = f"{float(values['temperature']):g}"
    return text
