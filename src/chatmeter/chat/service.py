"""One chat turn: admit → retrieve → reserve → generate → settle → store.

``start_turn`` does everything that can refuse a turn before a byte of the
answer is sent (unknown or inactive assistant, rate limits, message size, a
full queue, not enough tokens), so refusals are plain HTTP errors. The
returned ``Turn`` then streams the answer and, however the stream ends
(finished, broken provider, visitor gone, hold lost), settles exactly what the
model consumed and stores the messages in the same transaction as the
settlement. Its hold is the turn's own (``HoldOwner.CHAT``): nothing but the
turn settles or releases it, and ``chat.keeper`` keeps it alive while the turn
lives. The web serves a turn through ``chat.streaming``, which waits for the
model in ``chat.queue`` without holding a thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import secrets
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from chatmeter.accounts.models import Account
from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.chat import caps, prompt
from chatmeter.chat.models import Conversation, Message
from chatmeter.chat.queue import Ticket
from chatmeter.context import Context
from chatmeter.errors import Conflict, InsufficientTokens, InvalidInput, NotFound, Unavailable
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import HoldOwner
from chatmeter.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStream,
    PartialGeneration,
    Provider,
    ProviderError,
    TextDelta,
    Usage,
)
from chatmeter.llm.rates import Rate, charge
from chatmeter.retrieval.search import Passage, retrieve
from chatmeter.storable import NUL_MESSAGE, has_nul

log = logging.getLogger("chatmeter.chat")


@dataclass
class Turn:
    """An answer in the making; iterate it for events, it settles itself when done."""

    ctx: Context
    assistant_id: int
    account_id: int
    conversation_id: int
    conversation_public_id: str
    question: str
    passages: list[Passage]
    provider: Provider
    request: GenerationRequest
    prompt_tokens: int
    rate: Rate
    hold_id: int
    held: int
    day: dt.date  # of the account's time zone, when the turn reserved: its daily cap's day
    show_sources: str  # what the visitor sees of the sources (``Assistant.show_sources``)
    # Admission to the model's queue; None when the caller runs the turn directly.
    ticket: Ticket | None = None
    # Set to stop generating at the next token: the visitor left, or the hold was lost.
    stop: threading.Event = field(default_factory=threading.Event, repr=False)
    answer: str = ""
    usage: Usage | None = None
    status: str = "pending"
    _stream: GenerationStream | None = field(default=None, repr=False)
    _finished: bool = field(default=False, repr=False)
    _finish_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def start_event(self) -> dict[str, Any]:
        return {"type": "start", "conversation_id": self.conversation_public_id}

    def events(self, *, announce: bool = True) -> Iterator[dict[str, Any]]:
        """``start`` (unless ``announce`` is false), ``delta`` events with text, then
        ``done`` (or ``error``). Runs the model in the calling thread."""
        pieces: list[str] = []
        try:
            # Inside the try: a visitor who leaves right after "start" is settled too.
            if announce:
                yield self.start_event
            self._stream = self.provider.stream(self.request)
            for event in self._stream:
                if isinstance(event, TextDelta) and event.text:
                    pieces.append(event.text)
                    yield {"type": "delta", "text": event.text}
                if self.stop.is_set():
                    break
            else:
                self.usage = self._stream.usage
                self.status = "complete"
        except PartialGeneration as broken:
            self.usage, self.status = broken.usage, "partial"
            log.warning("generation broke off for assistant %s: %s", self.assistant_id, broken)
        except ProviderError as failed:
            self.usage, self.status = Usage(0, 0, "provider"), "failed"
            log.warning("provider failed for assistant %s: %s", self.assistant_id, failed)
        finally:
            if self.status == "pending":  # the visitor went away mid-answer, or told to stop
                self.status = "interrupted"
                self.usage = self._stream.usage if self._stream else Usage(0, 0, "provider")
                if self._stream:
                    self._stream.close()
            self.answer = "".join(pieces)
            self._finish()
        if self.status == "failed":
            yield {"type": "error", "message": Unavailable().message}
            return
        shown = [] if self.show_sources == "none" else self.passages
        yield {
            "type": "done",
            "conversation_id": self.conversation_public_id,
            "sources": [p.shown(self.show_sources) | {"label": i} for i, p in enumerate(shown, 1)],
        }

    def generate(self, emit: Callable[[dict[str, Any]], None]) -> None:
        """Run the model and hand each event after ``start`` to ``emit``; settles at the end.

        ``emit`` must not block (it is called while the model is held): the web
        passes each event to the event loop, which writes it to the visitor.
        """
        events = self.events(announce=False)
        try:
            for event in events:
                emit(event)
        finally:
            events.close()

    def abandon(self) -> None:
        """The turn will never generate (the visitor left while it waited): give its hold back."""
        self.status = "interrupted"
        self._finish()

    def run(self) -> dict[str, Any]:
        """The whole answer at once (the JSON form of the public API)."""
        return self.result(list(self.events()))

    def result(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON answer made of a finished turn's events."""
        if not events or events[-1]["type"] != "done":
            raise Unavailable()
        return {
            "conversation_id": self.conversation_public_id,
            "answer": self.answer,
            "sources": events[-1]["sources"],
        }

    def _finish(self) -> None:
        """Settle what was consumed and store the exchange, in one transaction; once."""
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
        try:
            self._settle_and_store()
        finally:
            self.ctx.hold_keeper.forget(self.hold_id)

    def _settle_and_store(self) -> None:
        usage = self.usage or Usage(0, 0, "provider")
        if self.status == "failed" or usage.total_tokens == 0:
            with self.ctx.db.uow() as uow:
                # Conflict: it expired meanwhile, so its tokens are back already.
                with contextlib.suppress(Conflict):
                    ledger.release(
                        uow.session,
                        account_id=self.account_id,
                        hold_id=self.hold_id,
                        now=self.ctx.clock.now(),
                        owner=HoldOwner.CHAT,
                    )
                caps.give_back(
                    uow.session, assistant_id=self.assistant_id, day=self.day, tokens=self.held
                )
                conversation = uow.session.get(Conversation, self.conversation_id)
                if conversation is not None and conversation.messages == 0:
                    uow.session.delete(conversation)  # nothing was said: nothing to show
                uow.commit()
            return
        context, generation = charge(usage, self.rate)
        if context + generation > self.held:  # a provider overran its cap: never charge more
            log.error("usage %s exceeds the hold of %s tokens", usage, self.held)
            generation = max(0, self.held - context)
            context = min(context, self.held)
        now = self.ctx.clock.now()
        with self.ctx.db.uow() as uow:
            session = uow.session
            context, generation = _settle(self, session, context, generation, now)
            caps.give_back(
                session,
                assistant_id=self.assistant_id,
                day=self.day,
                tokens=self.held - context - generation,
            )
            conversation = session.get(Conversation, self.conversation_id)
            assert conversation is not None
            session.add(
                Message(
                    conversation_id=conversation.id,
                    role="user",
                    content=self.question,
                    created_at=now,
                )
            )
            session.add(
                Message(
                    conversation_id=conversation.id,
                    role="assistant",
                    content=self.answer,
                    context_tokens=context,
                    generation_tokens=generation,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    hold_id=self.hold_id,
                    status=self.status,
                    created_at=now,
                    sources=json.dumps([p.source() for p in self.passages]),
                )
            )
            conversation.messages += 2
            conversation.context_tokens += context
            conversation.generation_tokens += generation
            conversation.updated_at = max(conversation.updated_at, now)  # its last message
            uow.commit()


def warm_up(ctx: Context) -> None:
    """Load the embedding model and the bundled model now, not on the first visitor's turn.

    Served without it, the first crowd after a start waits seconds for both to load.
    """
    ctx.embedder.embed(["warm up"])
    if any(choice.provider == "local" for choice in ctx.models.choices):
        provider = ctx.provider("local", "")
        provider.count_prompt_tokens([ChatMessage("user", "warm up")])


def start_turn(
    ctx: Context,
    *,
    public_key: str,
    message: str,
    conversation_id: str | None,
    visitor: str,
    queue: bool = False,
) -> Turn:
    """Everything before the answer; raises ``Unavailable``, ``Busy``, ``RateLimited`` or
    ``InvalidInput``.

    ``queue``: take a place in the model's queue (``Turn.ticket``), or ``Busy`` if it
    is full; the web always queues. Without it the caller runs the turn in its own
    thread (the CLI, benchmarks, tests).
    """
    question = message.strip() if isinstance(message, str) else ""
    if not question:
        raise InvalidInput("the message is empty", field="message")
    # Refused before anything is reserved: PostgreSQL could not store the exchange.
    if has_nul(question):
        raise InvalidInput(f"the message {NUL_MESSAGE}", field="message")
    if has_nul(conversation_id):
        raise InvalidInput(f"the conversation id {NUL_MESSAGE}", field="conversation_id")
    if len(question) > ctx.settings.chat_max_message_chars:
        raise InvalidInput(
            f"the message is longer than {ctx.settings.chat_max_message_chars:,} characters",
            field="message",
        )
    with ctx.db.read() as session:
        assistant = assistants.visible_by_public_key(
            session, public_key=public_key, now=ctx.clock.now()
        )
        if assistant is None:
            raise Unavailable()
        ctx.limiter.check(assistant_id=assistant.id, visitor=visitor)
        conversation, history = _history(session, assistant, conversation_id)
        caps.check_turns(assistant, conversation)
        timezone = session.get(Account, assistant.account_id).timezone  # type: ignore[union-attr]

    provider = _provider(ctx, assistant)
    ticket = None
    if queue:
        ticket = ctx.generation_queue(provider).admit(account_id=assistant.account_id)
    try:
        return _prepare(
            ctx, assistant, provider, ticket, question, history, conversation_id, visitor, timezone
        )
    except BaseException:
        if ticket is not None:
            ticket.leave()
        raise


def _provider(ctx: Context, assistant: Assistant) -> Provider:
    """The assistant's model; ``Unavailable`` if it cannot be had (no longer offered, broken)."""
    try:
        return ctx.provider(assistant.provider, assistant.model)
    except (ValueError, ProviderError) as exc:
        log.error("assistant %s cannot use its model: %s", assistant.id, exc)
        raise Unavailable() from exc


def _prepare(
    ctx: Context,
    assistant: Assistant,
    provider: Provider,
    ticket: Ticket | None,
    question: str,
    history: list[tuple[str, str]],
    conversation_id: str | None,
    visitor: str,
    timezone: str,
) -> Turn:
    try:
        count = _text_counter(provider)
        with ctx.db.read() as session:
            passages = retrieve(
                session,
                assistant_id=assistant.id,
                question=question,
                embedder=ctx.embedder,
                vectors=ctx.vectors,
                passages=assistant.passages,
                budget=assistant.context_budget,
                count_tokens=count,
            )
        kept = prompt.trim_history(
            history, budget=ctx.settings.chat_history_tokens, count_tokens=count
        )
        messages = prompt.build(
            instructions=assistant.instructions,
            passages=[
                prompt.PassageText(i, p.heading, p.filename, p.text)
                for i, p in enumerate(passages, 1)
            ],
            history=kept,
            question=question,
        )
        prompt_tokens = provider.count_prompt_tokens(messages)
        max_tokens = min(assistant.max_tokens, provider.context_window - prompt_tokens)
        if max_tokens < 1:
            raise InvalidInput("the message is too long for this assistant", field="message")
    except ProviderError as exc:
        log.warning("cannot prepare a turn for assistant %s: %s", assistant.id, exc)
        raise Unavailable() from exc

    rate = ctx.rate_card.rate_for(provider.model)
    reserve = sum(charge(Usage(prompt_tokens, max_tokens, "tokenizer"), rate))
    now = ctx.clock.now()
    day = caps.local_day(now, timezone)
    try:
        with ctx.db.uow() as uow:
            hold = ledger.reserve(
                uow.session,
                account_id=assistant.account_id,
                tokens=reserve,
                key=f"chat:{uuid.uuid4()}",
                ttl_seconds=ctx.settings.chat_hold_seconds,
                now=now,
                owner=HoldOwner.CHAT,
            )
            caps.take(uow.session, assistant=assistant, day=day, tokens=reserve)
            conversation = _conversation(uow.session, assistant, conversation_id, visitor, now)
            uow.commit()
    except InsufficientTokens as exc:  # the visitor hears only "unavailable"
        raise Unavailable() from exc
    turn = Turn(
        ctx=ctx,
        assistant_id=assistant.id,
        account_id=assistant.account_id,
        conversation_id=conversation.id,
        conversation_public_id=conversation.public_id,
        question=question,
        passages=passages,
        provider=provider,
        request=GenerationRequest(
            messages=tuple(messages), max_tokens=max_tokens, temperature=assistant.temperature
        ),
        prompt_tokens=prompt_tokens,
        rate=rate,
        hold_id=hold.id,
        held=reserve,
        day=day,
        show_sources=assistant.show_sources,
        ticket=ticket,
    )
    ctx.hold_keeper.keep(hold.id, turn.stop)
    return turn


def _settle(
    turn: Turn, session: Any, context: int, generation: int, now: dt.datetime
) -> tuple[int, int]:
    """Settle the turn's hold; if it was lost, charge what is left to charge. Returns the
    figures charged."""
    try:
        ledger.settle(
            session,
            account_id=turn.account_id,
            hold_id=turn.hold_id,
            context=context,
            generation=generation,
            now=now,
            owner=HoldOwner.CHAT,
        )
        return context, generation
    except Conflict:
        log.error("the hold %s ended before its turn settled; charging it directly", turn.hold_id)
    entry = ledger.charge_lost_hold(
        session,
        account_id=turn.account_id,
        hold_id=turn.hold_id,
        context=context,
        generation=generation,
        now=now,
    )
    return entry.context_tokens, entry.generation_tokens


COUNTS_KEPT = 4096  # per provider: passages and history messages seen lately
_counters: weakref.WeakKeyDictionary[Provider, Callable[[str], int]] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def _text_counter(provider: Provider) -> Callable[[str], int]:
    """Counts a text in the provider's tokens, remembering the counts of recent texts.

    The same passages and the same history come back turn after turn, and each
    count renders the chat template and tokenizes (0.13 ms a passage, several
    a turn); a provider's count of a text never changes.
    """
    with _counters_lock:
        counter = _counters.get(provider)
    if counter is None:
        counter = _new_counter(provider)
        with _counters_lock:
            counter = _counters.setdefault(provider, counter)
    return counter


def _new_counter(provider: Provider) -> Callable[[str], int]:
    # The exact count of a piece of text inside the prompt is the difference it makes.
    empty = provider.count_prompt_tokens([ChatMessage("user", "")])
    owner = weakref.ref(provider)  # the cache must not keep its provider alive

    @functools.lru_cache(maxsize=COUNTS_KEPT)
    def count(text: str) -> int:
        counting = owner()
        assert counting is not None, "a counter outlived its provider"
        return max(0, counting.count_prompt_tokens([ChatMessage("user", text)]) - empty)

    return count


def _history(
    session: Any, assistant: Assistant, public_id: str | None
) -> tuple[Conversation | None, list[tuple[str, str]]]:
    """The visitor's conversation with this assistant, if it goes on, and its last messages."""
    if not public_id:
        return None, []
    conversation = session.scalar(
        select(Conversation).where(
            Conversation.public_id == public_id, Conversation.assistant_id == assistant.id
        )
    )
    if conversation is None:
        return None, []  # unknown or another assistant's: start afresh rather than leak
    rows = session.execute(
        select(Message.role, Message.content)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id.desc())
        .limit(20)
    ).all()
    return conversation, [(role, content) for role, content in reversed(rows)]


def _conversation(
    session: Any, assistant: Assistant, public_id: str | None, visitor: str, now: dt.datetime
) -> Conversation:
    if public_id:
        existing = session.scalar(
            select(Conversation).where(
                Conversation.public_id == public_id, Conversation.assistant_id == assistant.id
            )
        )
        if existing is not None:
            return existing  # type: ignore[no-any-return]
    conversation = Conversation(
        public_id="cv_" + secrets.token_urlsafe(18),
        assistant_id=assistant.id,
        account_id=assistant.account_id,
        visitor=visitor[:64],
        messages=0,
        context_tokens=0,
        generation_tokens=0,
        created_at=now,
        updated_at=now,
    )
    session.add(conversation)
    session.flush()
    return conversation


# --- the customer's view -------------------------------------------------------


def list_conversations(
    session: Any,
    *,
    account_id: int,
    assistant_id: int | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[Conversation]:
    query = select(Conversation).where(Conversation.account_id == account_id)
    if assistant_id is not None:
        query = query.where(Conversation.assistant_id == assistant_id)
    if before is not None:
        query = query.where(Conversation.id < before)
    return list(session.scalars(query.order_by(Conversation.id.desc()).limit(limit)))


def get_conversation(session: Any, *, account_id: int, conversation_id: int) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.account_id != account_id:
        raise NotFound("no such conversation", conversation_id=conversation_id)
    return conversation  # type: ignore[no-any-return]


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "assistant_id": conversation.assistant_id,
        "message_count": conversation.messages,
        "context_tokens": conversation.context_tokens,
        "generation_tokens": conversation.generation_tokens,
        "tokens": conversation.tokens,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


def message_dicts(session: Any, *, conversation_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    )
    return [
        {
            "id": m.id,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "context_tokens": m.context_tokens,
            "generation_tokens": m.generation_tokens,
            "tokens": m.context_tokens + m.generation_tokens,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "sources": json.loads(m.sources),
            "created_at": m.created_at,
        }
        for m in rows
    ]
