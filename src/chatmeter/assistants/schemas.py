"""An assistant's settings, validated once for the API, the CLI and the panel."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from chatmeter import validation
from chatmeter.storable import check_storable
from chatmeter.widget import texts

_HOST = re.compile(
    r"^(\*\.)?(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$"
)

Name = Annotated[StrictStr, Field(min_length=1, max_length=100)]
TEXT_LENGTH = 200  # characters in one of the widget's texts
WidgetTexts = Annotated[dict[StrictStr, StrictStr], Field(max_length=len(texts.KEYS))]


class AssistantFields(BaseModel):
    """Every field is optional so that one model serves create (with defaults) and update."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name | None = None
    instructions: Annotated[StrictStr, Field(max_length=4000)] | None = None
    provider: Literal["local", "openai"] | None = None
    model: Annotated[StrictStr, Field(max_length=100)] | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[StrictInt, Field(ge=16, le=2048)] | None = Field(
        None, description="Response cap in tokens."
    )
    passages: Annotated[StrictInt, Field(ge=1, le=10)] | None = Field(
        None, description="Passages retrieved per answer."
    )
    context_budget: Annotated[StrictInt, Field(ge=50, le=8000)] | None = Field(
        None, description="Tokens of training context put into each prompt."
    )
    welcome_message: Annotated[StrictStr, Field(max_length=500)] | None = None
    widget_title: Annotated[StrictStr, Field(max_length=60)] | None = None
    widget_color: Annotated[StrictStr, Field(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None
    widget_position: Literal["left", "right"] | None = None
    widget_texts: (
        Annotated[dict[StrictStr, StrictStr], Field(max_length=len(texts.KEYS))] | None
    ) = Field(
        None,
        description="Your own wording of the widget's texts, by key (subtitle, "
        "placeholder, ...), shown in every language; a key left out or blank shows the "
        "visitor's language's default.",
    )
    widget_theme: Literal["auto", "light", "dark"] | None = Field(
        None,
        description="auto follows the visitor's light or dark preference; light or dark fixes it.",
    )
    allowed_domains: Annotated[list[StrictStr], Field(max_length=50)] | None = None
    daily_token_cap: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = Field(
        None,
        description="Tokens this assistant may use per day (the account's time zone); "
        "0: no cap. When reached it goes quietly unavailable until the next day.",
    )
    monthly_token_cap: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] | None = Field(
        None,
        description="Tokens this assistant may use per calendar month (the account's time "
        "zone) out of the shared balance; 0: no cap. When reached it goes quietly "
        "unavailable while the others keep answering, until the 1st or a higher cap.",
    )
    turns_per_conversation: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = Field(
        None, description="Questions one conversation may ask; 0: no cap."
    )
    show_sources: Literal["none", "names", "passages"] | None = Field(
        None,
        description="What visitors see of an answer's sources: nothing, the file names "
        "(with heading and page), or also an excerpt of each passage.",
    )

    answer_mode: Literal["quotes", "checked", "generated"] | None = Field(
        None,
        description="How answers are made: quotes (the documents' best-supported "
        "sentences, quoted), checked (the model writes, sentences the documents do not "
        "support are dropped) or generated (the model writes freely).",
    )
    fallback_message: Annotated[StrictStr, Field(max_length=500)] | None = Field(
        None,
        description="What the assistant says when its documents do not answer; empty: "
        "a sentence naming the account's contact email.",
    )

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        return check_storable(value)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("the name must not be blank")
        return value.strip() if value is not None else None

    @field_validator("widget_texts")
    @classmethod
    def _texts(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        for key, text in value.items():
            if key not in texts.KEYS:
                raise ValueError(
                    f"{key!r} is not one of the widget's texts: {', '.join(texts.KEYS)}"
                )
            if len(text) > TEXT_LENGTH:
                raise ValueError(f"the text {key!r} is longer than {TEXT_LENGTH} characters")
        return {key: text.strip() for key, text in value.items() if text.strip()}

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = []
        for raw in value:
            domain = raw.strip().lower().removeprefix("https://").removeprefix("http://")
            domain = domain.rstrip("/")
            if not _HOST.match(domain):
                raise ValueError(
                    f"{raw!r} is not a domain name such as example.com or *.example.com"
                )
            if domain not in cleaned:
                cleaned.append(domain)
        return cleaned


# --- the model's complaints in words ---------------------------------------------------

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
    "widget_texts": "the widget's texts",
    "widget_theme": "the theme",
    "allowed_domains": "the allowed websites",
    "daily_token_cap": "the daily token cap",
    "monthly_token_cap": "the monthly token cap",
    "turns_per_conversation": "the questions per conversation",
    "show_sources": "the sources shown",
    "answer_mode": "how answers are made",
    "fallback_message": "the fallback message",
}
WHOLE_NUMBERS = (
    "max_tokens",
    "passages",
    "context_budget",
    "daily_token_cap",
    "monthly_token_cap",
    "turns_per_conversation",
)
NUMBERS = ("temperature",)


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


def field_message(name: str, error: ErrorDetails) -> str:
    """A validation error of ``AssistantFields`` as a sentence about the field."""
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "too_long":
        return f"list at most {context['max_length']:,} allowed websites"
    if name in WHOLE_NUMBERS + NUMBERS:
        return number_message(name)
    if kind == "string_pattern_mismatch" and name == "widget_color":
        return f"{LABELS[name]} must be a colour code such as #0f766e"
    return validation.readable(name, error, labels=LABELS)


def field_messages(exc: ValidationError) -> dict[str, str]:
    """Each field's first complaint, worded as the panel, the API and the CLI show it."""
    return validation.messages(exc.errors(), field_message)
