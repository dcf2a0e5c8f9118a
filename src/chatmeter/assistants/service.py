"""Create, change and delete assistants; look one up by its public key."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.assistants.models import Assistant
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.errors import InvalidInput, NotFound
from chatmeter.llm.catalog import ModelCatalog

PUBLIC_KEY_PREFIX = "pk_"
# What ``_new_public_key`` makes (a URL-safe token after the prefix). Anything else
# names no assistant and is never put into a query: a NUL in it failed the query
# on PostgreSQL, a 500 for anyone on the internet.
PUBLIC_KEY_SHAPE = re.compile(r"pk_[A-Za-z0-9_-]{1,37}")

# Defaults chosen so that a typical 3–4 turn conversation with a trained
# assistant costs about 2,000 tokens, the figure the help article promises
# (bench/chat.py measures it).
DEFAULTS: dict[str, Any] = {
    "instructions": "You are a friendly, concise assistant for this business. Answer from "
    "the passages provided; if they do not contain the answer, say you don't know.",
    "provider": "local",
    "model": "",
    "temperature": 0.2,
    "max_tokens": 160,
    "passages": 4,
    "context_budget": 500,
    "welcome_message": "Hi! How can I help you today?",
    "widget_title": "",
    "widget_color": "#2563eb",
    "widget_position": "right",
    "widget_texts": {},
    "widget_theme": "auto",
    "allowed_domains": [],
    # About 50 typical conversations a day: a crowd with the public key can drain no
    # more than this from the shared balance in a day, per assistant.
    "daily_token_cap": 100_000,
    # None: the shared balance is the only limit, unless the owner sets one.
    "monthly_token_cap": 0,
    "turns_per_conversation": 50,
    # File names, headings and pages; passages are the customer's text, shown only if chosen.
    "show_sources": "names",
    # Chosen by measurement on bench/answers (docs/benchmarks.md, "Answers").
    "answer_mode": "quotes",
    "fallback_message": "",
}


def create_assistant(
    session: Session,
    *,
    account_id: int,
    fields: AssistantFields,
    now: dt.datetime,
    catalog: ModelCatalog | None = None,
) -> Assistant:
    """A new assistant; its model must be one ``catalog`` offers (default: the bundled one)."""
    values = DEFAULTS | fields.model_dump(exclude_none=True)
    if "name" not in values:
        raise InvalidInput("an assistant needs a name", field="name")
    _check_model(values, catalog)
    assistant = Assistant(
        account_id=account_id,
        public_key=_new_public_key(),
        index_version=0,
        created_at=now,
        updated_at=now,
    )
    _apply(assistant, values)
    session.add(assistant)
    session.flush()
    return assistant


def update_assistant(
    session: Session,
    *,
    account_id: int,
    assistant_id: int,
    fields: AssistantFields,
    now: dt.datetime,
    catalog: ModelCatalog | None = None,
) -> Assistant:
    """Change the given settings; a new model must be one ``catalog`` offers."""
    assistant = get_assistant(session, account_id=account_id, assistant_id=assistant_id)
    values = fields.model_dump(exclude_none=True)
    if "provider" in values or "model" in values:
        values = {"provider": assistant.provider, "model": assistant.model} | values
        _check_model(values, catalog)
    if values.get("monthly_token_cap", assistant.monthly_token_cap) != assistant.monthly_token_cap:
        _note_month_at_cap_change(session, assistant, now)
    _apply(assistant, values)
    assistant.updated_at = now
    return assistant


def _note_month_at_cap_change(session: Session, assistant: Assistant, now: dt.datetime) -> None:
    """Remember the month's tokens as the monthly cap changes, under the balance lock.

    Reservations are checked against the cap under the same lock, so from here on the
    month can only grow up to the new cap; what it had already used may be above a
    lowered one, and ``ledger verify`` allows that much (and no more) this month.
    """
    from chatmeter.accounts.models import Account
    from chatmeter.chat import caps
    from chatmeter.ledger import service as ledger

    ledger.lock_balance(session, account_id=assistant.account_id)
    account = session.get(Account, assistant.account_id)
    day = caps.local_day(now, account.timezone if account else "UTC")
    assistant.monthly_cap_set_on = day
    assistant.monthly_cap_used_then = caps.used_in_month(
        session, assistant_id=assistant.id, day=day
    )


def delete_assistant(
    session: Session, *, account_id: int, assistant_id: int, now: dt.datetime
) -> None:
    """Hide the assistant everywhere; its training data goes, its conversations stay for usage."""
    from chatmeter.training import service as training

    assistant = get_assistant(session, account_id=account_id, assistant_id=assistant_id)
    training.delete_all_files(session, assistant=assistant, now=now)
    assistant.deleted_at = now
    assistant.public_key = f"deleted_{assistant.id}_{secrets.token_hex(4)}"


def rotate_public_key(
    session: Session, *, account_id: int, assistant_id: int, now: dt.datetime
) -> Assistant:
    """A new embed key; pages still carrying the old one stop showing the widget."""
    assistant = get_assistant(session, account_id=account_id, assistant_id=assistant_id)
    assistant.public_key = _new_public_key()
    assistant.updated_at = now
    return assistant


def get_assistant(session: Session, *, account_id: int, assistant_id: int) -> Assistant:
    assistant = session.get(Assistant, assistant_id)
    if assistant is None or assistant.account_id != account_id or assistant.deleted_at:
        raise NotFound("no such assistant", assistant_id=assistant_id)
    return assistant


def list_assistants(session: Session, *, account_id: int) -> list[Assistant]:
    return list(
        session.scalars(
            select(Assistant)
            .where(Assistant.account_id == account_id, Assistant.deleted_at.is_(None))
            .order_by(Assistant.id)
        )
    )


def by_public_key(session: Session, *, public_key: str) -> Assistant | None:
    if not PUBLIC_KEY_SHAPE.fullmatch(public_key):
        return None
    return session.scalar(
        select(Assistant).where(Assistant.public_key == public_key, Assistant.deleted_at.is_(None))
    )


def visible_by_public_key(
    session: Session, *, public_key: str, now: dt.datetime
) -> Assistant | None:
    """The assistant visitors may see and talk to: it exists, its account has tokens, and
    it has reached neither its daily nor its monthly token cap.

    The one place the "inactive at zero" rule meets the public: the widget and the
    chat both ask here, so they can never disagree.
    """
    from chatmeter.accounts.models import Account
    from chatmeter.billing.summary import is_active
    from chatmeter.chat import caps
    from chatmeter.ledger.models import Balance

    assistant = by_public_key(session, public_key=public_key)
    if assistant is None:
        return None
    balance = session.get(Balance, assistant.account_id)
    if balance is None or not is_active(balance):
        return None
    if assistant.daily_token_cap or assistant.monthly_token_cap:
        account = session.get(Account, assistant.account_id)
        day = caps.local_day(now, account.timezone if account else "UTC")
        if not (
            caps.under_daily_cap(session, assistant=assistant, day=day)
            and caps.under_monthly_cap(session, assistant=assistant, day=day)
        ):
            return None
    return assistant


def assistant_dict(assistant: Assistant) -> dict[str, Any]:
    return {
        "id": assistant.id,
        "public_key": assistant.public_key,
        "name": assistant.name,
        "instructions": assistant.instructions,
        "provider": assistant.provider,
        "model": assistant.model,
        "temperature": assistant.temperature,
        "max_tokens": assistant.max_tokens,
        "passages": assistant.passages,
        "context_budget": assistant.context_budget,
        "welcome_message": assistant.welcome_message,
        "widget_title": assistant.widget_title or assistant.name,
        "widget_color": assistant.widget_color,
        "widget_position": assistant.widget_position,
        "widget_texts": assistant.texts,
        "widget_theme": assistant.widget_theme,
        "allowed_domains": assistant.domains,
        "daily_token_cap": assistant.daily_token_cap,
        "monthly_token_cap": assistant.monthly_token_cap,
        "turns_per_conversation": assistant.turns_per_conversation,
        "show_sources": assistant.show_sources,
        "answer_mode": assistant.answer_mode,
        "fallback_message": assistant.fallback_message,
        "created_at": assistant.created_at,
        "updated_at": assistant.updated_at,
    }


def _check_model(values: dict[str, Any], catalog: ModelCatalog | None) -> None:
    """Make ``provider`` and ``model`` name a listed model, as stored; or ``InvalidInput``."""
    chosen = (catalog or ModelCatalog.bundled_only()).resolve(values["provider"], values["model"])
    values["provider"], values["model"] = chosen.provider, chosen.model


def _apply(assistant: Assistant, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "allowed_domains":
            value = "\n".join(value)
        elif name == "widget_texts":
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif name == "temperature":
            value = float(value)
        setattr(assistant, name, value)


def _new_public_key() -> str:
    return PUBLIC_KEY_PREFIX + secrets.token_urlsafe(18)
