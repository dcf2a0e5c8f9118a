"""A trained assistant to chat with, a provider wrapper that records calls, and ledger reads.

The wrappers sit around the real bundled model: they record what the chat
pipeline asked for, or break a real generation part-way, but every token is
generated and counted by llama.cpp.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.accounts import service as accounts
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat.models import Message
from chatmeter.context import Context
from chatmeter.errors import Unavailable
from chatmeter.ledger.models import Balance, EntryKind, Hold, LedgerEntry
from chatmeter.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStream,
    Meter,
    PartialGeneration,
    Provider,
    ProviderUnavailable,
    StreamEvent,
    TextDelta,
    Usage,
)
from chatmeter.training import service as training
from tests.support.accounts import add_tokens, new_account

QUESTION = "How many tokens are in one package?"

# Two small documents: one chunk each, so training takes a moment.
DOCUMENTS = {
    "buying-tokens.txt": (
        "Buying tokens\n\n"
        "Tokens are sold in packages of 5,000 tokens. One package costs 9 euros. "
        "If you choose 10 packages, you receive 50,000 tokens. Your token balance "
        "renews on the 1st day of each month, and you can cancel at any time.\n"
    ),
    "opening-hours.md": (
        "# Opening hours\n\n"
        "The shop is open Monday to Friday from 9:00 to 17:00. On Saturdays it opens "
        "from 10:00 to 14:00, and it is closed on Sundays and public holidays.\n"
    ),
}

UNAVAILABLE = {"error": {"code": "unavailable", "message": Unavailable().message}}
# What a visitor must never read in a refusal: anything about the customer's money.
MONEY_WORDS = (
    "token",
    "balance",
    "credit",
    "fund",
    "quota",
    "payment",
    "billing",
    "limit",
    "money",
    "purchase",
    "subscription",
    "insufficient",
    "depleted",
    "exhausted",
    "account",
    "plan",
    "paid",
)


@dataclass(frozen=True)
class Shop:
    """A customer with a trained assistant."""

    account_id: int
    assistant_id: int
    public_key: str
    api_key: str

    @property
    def chat_url(self) -> str:
        return f"/api/v1/public/{self.public_key}/chat"

    def owner(self, visitor: TestClient) -> TestClient:
        """The customer's own API client on the same app."""
        return TestClient(visitor.app, headers={"Authorization": f"Bearer {self.api_key}"})


def open_shop(
    ctx: Context,
    *,
    email: str = "owner@example.com",
    tokens: int = 5_000,
    train: bool = True,
    **fields: Any,
) -> Shop:
    """An account with ``tokens`` and an assistant (short, deterministic answers) trained
    on DOCUMENTS."""
    account_id = new_account(ctx, email=email)
    now = ctx.clock.now()
    # The generation path: these tests are about generating, settling and refusing.
    settings = {
        "name": "Help Center",
        "max_tokens": 16,
        "temperature": 0,
        "answer_mode": "generated",
    } | fields
    with ctx.db.uow() as uow:
        api_key = accounts.issue_api_key(uow.session, account_id=account_id, now=now)
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(**settings),
            now=now,
            catalog=ctx.models,
        )
        if train:
            for filename, text in DOCUMENTS.items():
                training.upload(
                    uow.session,
                    assistant=assistant,
                    filename=filename,
                    data=text.encode(),
                    max_bytes=ctx.settings.max_upload_bytes,
                    now=now,
                )
        shop = Shop(account_id, assistant.id, assistant.public_key, api_key)
        uow.commit()
    if train:
        assert training.process_queue(ctx) == {"ready": len(DOCUMENTS), "failed": 0}
    if tokens:
        add_tokens(ctx, account_id, tokens, key=f"shop:{email}")
    return shop


# --- providers around the real model --------------------------------------------------


class Recording(Provider):
    """The real provider; remembers every generation request it was given, and its stream."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.requests: list[GenerationRequest] = []
        self.streams: list[GenerationStream] = []
        self._lock = threading.Lock()

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self.inner.count_prompt_tokens(messages)

    def stream(self, request: GenerationRequest) -> GenerationStream:
        with self._lock:
            self.requests.append(request)
        stream = self.inner.stream(request)
        with self._lock:
            self.streams.append(stream)
        return stream

    @property
    def calls(self) -> int:
        return len(self.requests)


class Breaking(Recording):
    """The real model, whose answer breaks off after ``after`` deltas (0: before any token)."""

    def __init__(self, inner: Provider, *, after: int) -> None:
        super().__init__(inner)
        self.after = after
        self.consumed: Usage | None = None  # what the real model had used when it broke

    def stream(self, request: GenerationRequest) -> GenerationStream:
        real = super().stream(request)
        return _Relay(self._events(real), real)

    def _events(self, real: GenerationStream) -> Iterator[StreamEvent]:
        with real:
            if self.after == 0:
                raise ProviderUnavailable("the model server went away")
            seen = 0
            for event in real:
                yield event
                if isinstance(event, TextDelta):
                    seen += 1
                    if seen == self.after:
                        break
            self.consumed = real.usage
        raise PartialGeneration("the connection broke", usage=self.consumed, text=real.text)


class _Relay(GenerationStream):
    def __init__(self, events: Iterator[StreamEvent], real: GenerationStream) -> None:
        super().__init__(events, meter=Meter())
        self._real = real

    @property
    def usage(self) -> Usage:
        return self._real.usage


def install(ctx: Context, wrapper_type: type[Recording] = Recording, **options: Any) -> Any:
    """Put a wrapper around the context's own bundled model, where assistants find it."""
    real = ctx.provider("local", "")
    while isinstance(real, Recording):
        real = real.inner
    wrapper = wrapper_type(real, **options)
    ctx._providers["local:"] = wrapper
    return wrapper


# --- reading the outcome ------------------------------------------------------------


def entries(ctx: Context, account_id: int) -> list[LedgerEntry]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.account_id == account_id)
                .order_by(LedgerEntry.id)
            )
        )


def entry_ids(ctx: Context, account_id: int) -> list[int]:
    return [e.id for e in entries(ctx, account_id)]


def holds(ctx: Context, account_id: int) -> list[Hold]:
    with ctx.db.read() as session:
        return list(
            session.scalars(select(Hold).where(Hold.account_id == account_id).order_by(Hold.id))
        )


def settle_entry(ctx: Context, hold_id: int) -> LedgerEntry:
    (entry,) = [e for e in entries_for_hold(ctx, hold_id) if e.kind == EntryKind.SETTLE]
    return entry


def entries_for_hold(ctx: Context, hold_id: int) -> list[LedgerEntry]:
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(LedgerEntry).where(LedgerEntry.hold_id == hold_id).order_by(LedgerEntry.id)
            )
        )


def answers(ctx: Context) -> list[Message]:
    with ctx.db.read() as session:
        return list(
            session.scalars(select(Message).where(Message.role == "assistant").order_by(Message.id))
        )


def available(ctx: Context, account_id: int) -> int:
    with ctx.db.read() as session:
        balance = session.get(Balance, account_id)
        assert balance is not None
        return balance.available


def assert_says_nothing_about_money(text: str) -> None:
    words = set(re.findall(r"[a-z]+", text.lower()))
    leaked = [w for w in MONEY_WORDS if any(word.startswith(w) for word in words)]
    assert leaked == [], f"a refusal mentions {leaked}: {text!r}"


def sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """Server-Sent Events as (event, data) pairs."""
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def normalised(text: str) -> str:
    return " ".join(text.split())
