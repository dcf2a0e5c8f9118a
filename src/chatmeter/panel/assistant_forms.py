"""An assistant's settings form: posted text to ``AssistantFields``, each refusal beside
its field.

The rules themselves live in ``AssistantFields``, and its complaints are worded
by ``assistants.schemas.field_messages`` (the API and the CLI use the same);
this module only turns form text into the types the model expects. The ranges
shown in the form's hints come from the model's JSON schema, so they cannot drift.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.assistants.schemas import (
    LABELS,
    NUMBERS,
    TEXT_LENGTH,
    WHOLE_NUMBERS,
    AssistantFields,
    field_messages,
    number_message,
)
from chatmeter.errors import ChatmeterError, InvalidInput
from chatmeter.llm.catalog import ModelChoice, parse_entry
from chatmeter.panel.deps import sentence
from chatmeter.panel.rendering import form_text
from chatmeter.widget import texts

# Far above any field's own limit: only a guard against megabytes of form text.
RAW_LIMIT = 20_000

CREATE_FIELDS = ("name", "widget_title", "welcome_message", "instructions")
SETTINGS_FIELDS = tuple(LABELS)
# The widget's texts come as one field each (``text_subtitle``...) and are stored together
# as ``widget_texts``; a blank one shows the visitor's language's default.
TEXT_PREFIX = "text_"
TEXT_FIELDS = tuple(TEXT_PREFIX + key for key in texts.KEYS)
# The settings page's name for each of the widget's texts, in the widget's order.
TEXT_LABELS = {
    "subtitle": "Subtitle",
    "placeholder": "Message box",
    "send": "Send button",
    "open": "Chat button",
    "close": "Close button",
    "restart": "New conversation button",
    "conversation": "Conversation (for screen readers)",
    "typing": "Typing indicator",
    "sources": "Sources heading",
    "cut_off": "Answer cut short",
    "no_answer": "No answer",
    "unavailable": "Assistant unavailable",
    "too_fast": "Messages too fast",
    "busy": "Too busy",
    "full": "Conversation full",
    "rate_question": "Rating question",
    "helpful": "Helpful",
    "not_helpful": "Not helpful",
    "thanks": "Thanks for rating",
    "rating_failed": "Rating not sent",
    "powered_by": "Footer",
}
# What the settings page calls the fields whose API names are jargon; its messages too.
PLAIN_LABELS = {
    "max_tokens": "the longest answer",
    "temperature": "the creativity",
    "passages": "the sources read per answer",
    "context_budget": "the reading per answer",
}

_WHOLE = re.compile(r"[+-]?\d{1,30}")
_DECIMAL = re.compile(r"[+-]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})")
_DOMAIN_SEPARATORS = re.compile(r"[\s,]+")


class FormProblem(InvalidInput):
    """Bad values in a form: ``errors`` holds a message per field, the first is the message."""

    def __init__(self, errors: dict[str, str]) -> None:
        field, message = next(iter(errors.items()))
        super().__init__(message, field=field)
        self.errors = errors


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
    if "widget_texts" in names and any(field in form for field in TEXT_FIELDS):
        values["widget_texts"] = _widget_texts(form, errors)
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
            for name, message in field_messages(exc).items():
                errors.setdefault(name or "name", message)
    raise FormProblem({name: _plain(name, message) for name, message in errors.items()})


def _widget_texts(form: Any, errors: dict[str, str]) -> dict[str, str]:
    """The widget's texts the form sets (blank ones left out); too long ones into ``errors``."""
    found = {}
    for key in texts.KEYS:
        field = TEXT_PREFIX + key
        if field not in form:
            continue
        try:
            text = form_text(form, field, limit=RAW_LIMIT).strip()
        except InvalidInput as exc:
            errors[field] = exc.message
            continue
        if len(text) > TEXT_LENGTH:
            errors[field] = f"this text is too long (at most {TEXT_LENGTH} characters)"
        elif text:
            found[key] = text
    return found


def _plain(name: str, message: str) -> str:
    """A message about a field in the words the settings page labels it with."""
    jargon, plain = LABELS.get(name, ""), PLAIN_LABELS.get(name)
    if plain and message.startswith(jargon):
        return plain + message.removeprefix(jargon)
    return message


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


def form_of(assistant: Assistant | None) -> dict[str, str]:
    """The settings form's text for an assistant, or a new one's defaults."""
    values = dict(assistants.DEFAULTS) | {"name": ""}
    if assistant is not None:
        values = {name: getattr(assistant, name) for name in SETTINGS_FIELDS}
        values["allowed_domains"] = assistant.domains
    own_texts = assistant.texts if assistant is not None else {}
    del values["widget_texts"]
    values |= {TEXT_PREFIX + key: own_texts.get(key, "") for key in texts.KEYS}
    provider = assistant.provider if assistant is not None else values["provider"]
    values["model"] = ModelChoice(provider, values["model"]).value
    text = {name: "" if value is None else str(value) for name, value in values.items()}
    text["allowed_domains"] = "\n".join(values["allowed_domains"])
    text["temperature"] = f"{float(values['temperature']):g}"
    return text
