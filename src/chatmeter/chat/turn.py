"""One chat turn after its admission: generate → settle → store.

A ``Turn`` (made by ``chat.admission.start_turn``) streams the answer and,
however the stream ends (finished, broken provider, visitor gone, hold lost),
settles exactly what the model consumed and stores the messages in the same
transaction as the settlement. Its hold is the turn's own
(``HoldOwner.CHAT``): nothing but the turn settles or releases it, and
``chat.keeper`` keeps it alive while the turn lives. The web serves a turn
through ``chat.streaming``, which waits for the model in ``chat.queue``
without holding a thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import case, literal, update
from sqlalchemy.orm import Session

from chatmeter.answers.grounding import SentenceChecker, split_generated
from chatmeter.answers.matching import Match
from chatmeter.answers.modes import Kind, Plan
from chatmeter.chat import caps
from chatmeter.chat.models import Conversation, Message
from chatmeter.chat.queue import Ticket
from chatmeter.db import UTCDateTime
from chatmeter.errors import Conflict, Unavailable
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import HoldOwner
from chatmeter.llm.base import (
    GenerationRequest,
    GenerationStream,
    PartialGeneration,
    Provider,
    ProviderError,
    TextDelta,
    Usage,
)
from chatmeter.llm.rates import Rate, charge
from chatmeter.notifications import balance_notices
from chatmeter.retrieval.search import CORRECTED_ANSWER, Passage
from chatmeter.services import Basics
from chatmeter.telemetry import metrics  # issue #13: counters only, no I/O

if TYPE_CHECKING:
    from chatmeter.answers.modes import SentenceVectors
    from chatmeter.chat.keeper import HoldKeeper
    from chatmeter.chat.limits import ChatLimiter
    from chatmeter.chat.queue import GenerationQueue
    from chatmeter.knowledge.embeddings import Embedder
    from chatmeter.llm.catalog import ModelCatalog
    from chatmeter.llm.rates import RateCard
    from chatmeter.retrieval.vectors import VectorCache

log = logging.getLogger("chatmeter.chat")


class ChatServices(Basics, Protocol):
    """What a chat turn needs of the application (``chatmeter.context.Context``)."""

    @property
    def embedder(self) -> Embedder: ...
    @property
    def vectors(self) -> VectorCache: ...
    @property
    def models(self) -> ModelCatalog: ...
    @property
    def rate_card(self) -> RateCard: ...
    @property
    def limiter(self) -> ChatLimiter: ...
    @property
    def sentence_vectors(self) -> SentenceVectors: ...
    @property
    def hold_keeper(self) -> HoldKeeper: ...
    def provider(self, name: str, model: str = "") -> Provider: ...
    def generation_queue(self, provider: Provider) -> GenerationQueue: ...


@dataclass
class Turn:
    """An answer in the making; iterate it for events, it settles itself when done."""

    ctx: ChatServices
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
    capped: bool  # the assistant had a daily or monthly cap when the turn began
    show_sources: str  # what the visitor sees of the sources (``Assistant.show_sources``)
    # Admission to the model's queue; None when the caller runs the turn directly.
    ticket: Ticket | None = None
    # How it answers (``answers.modes.plan``); a plan with text needs no model, and
    # ``known_usage`` is then what it costs.
    plan: Plan = field(default_factory=lambda: Plan(Kind.GENERATED, "", 0.0))
    known_usage: Usage | None = None
    checker: SentenceChecker | None = None  # set in the "checked" mode
    fallback: str = ""  # said when a checked generation keeps no sentence
    kind: Kind = Kind.GENERATED  # how the answer was made, in the end
    message_id: int | None = None  # the stored answer's, once settled
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

    def events(self, *, announce: bool = True) -> Generator[dict[str, Any], None, None]:
        """``start`` (unless ``announce`` is false), ``delta`` events with text, then
        ``done`` (or ``error``). Runs the model, if the answer needs it, in the calling
        thread."""
        pieces: list[str] = []
        self.kind = self.plan.kind
        try:
            # Inside the try: a visitor who leaves right after "start" is settled too.
            if announce:
                yield self.start_event
            if self.known_usage is not None:
                for piece in _pieces(self.plan.text):
                    pieces.append(piece)
                    yield {"type": "delta", "text": piece}
                self.usage, self.status = self.known_usage, "complete"
            else:
                for text in self._generate():
                    pieces.append(text)
                    yield {"type": "delta", "text": text}
                if self.checker is not None and not pieces and self.status != "failed":
                    # Nothing it wrote was supported: it says it does not know.
                    self.kind = Kind.ABSTAINED
                    pieces.append(self.fallback)
                    yield {"type": "delta", "text": self.fallback}
        except PartialGeneration as broken:
            self.usage, self.status = broken.usage, "partial"
            log.warning("generation broke off for assistant %s: %s", self.assistant_id, broken)
        except ProviderError as failed:
            self.usage, self.status = Usage(0, 0, "provider"), "failed"
            log.warning("provider failed for assistant %s: %s", self.assistant_id, failed)
        finally:
            if self.status == "pending":  # the visitor went away mid-answer, or told to stop
                self.status = "interrupted"
                if self.known_usage is not None:
                    self.usage = self.known_usage  # it was all read and composed already
                else:
                    self.usage = self._stream.usage if self._stream else Usage(0, 0, "provider")
                if self._stream:
                    self._stream.close()
            self.answer = "".join(pieces).strip()
            self._finish()
        if self.status == "failed":
            yield {"type": "error", "message": Unavailable().message}
            return
        shown = [] if self.show_sources == "none" or self.kind is Kind.ABSTAINED else self.passages
        yield {
            "type": "done",
            "conversation_id": self.conversation_public_id,
            "message_id": self.message_id,
            "abstained": self.kind is Kind.ABSTAINED,
            "cut_off": self.cut_off,
            "sources": [p.shown(self.show_sources) | {"label": i} for i, p in enumerate(shown, 1)],
        }

    @property
    def cut_off(self) -> bool:
        """Whether the answer stopped at the response cap (shown with a marker)."""
        stream = self._stream
        return (
            stream is not None
            and stream.finish_reason == "length"
            and self.kind is not Kind.ABSTAINED
            and bool(self.answer)
        )

    def _generate(self) -> Iterator[str]:
        """The model's text as it comes; in the checked mode, only its supported
        sentences. Sets ``usage`` and ``status`` when generation ends."""
        self._stream = self.provider.stream(self.request)
        unchecked = ""
        for event in self._stream:
            if isinstance(event, TextDelta) and event.text:
                if self.checker is None:
                    yield event.text
                else:
                    done, unchecked = split_generated(unchecked + event.text)
                    yield from self._supported(done)
            if self.stop.is_set():
                return
        self.usage = self._stream.usage
        self.status = "complete"
        # A last sentence without its full stop counts, unless the response cap cut it.
        if self.checker is not None and self._stream.finish_reason != "length":
            yield from self._supported([unchecked])

    def _supported(self, sentences: list[str]) -> Iterator[str]:
        assert self.checker is not None
        for sentence in sentences:
            if sentence.strip() and self.checker.supported(sentence.strip()):
                yield sentence.strip() + " "

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
            "message_id": self.message_id,
            "answer": self.answer,
            "abstained": events[-1]["abstained"],
            "cut_off": events[-1]["cut_off"],
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
        except Exception:
            metrics.ledger_error("settle_failed")  # telemetry (issue #13)
            raise
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
                balance_notices.send_raised(uow.session, now=self.ctx.clock.now())
                caps.give_back(
                    uow.session, assistant_id=self.assistant_id, day=self.day, tokens=self.held
                )
                conversation = uow.session.get(Conversation, self.conversation_id)
                if conversation is not None and conversation.messages == 0:
                    uow.session.delete(conversation)  # nothing was said: nothing to show
                entries = ledger.entries_written(uow.session)  # telemetry (issue #13)
                uow.commit()
            _reported(self, entries, 0, 0)  # telemetry (issue #13)
            return
        context, generation = charge(usage, self.rate)
        if context + generation > self.held:  # a provider overran its cap: never charge more
            log.error("usage %s exceeds the hold of %s tokens", usage, self.held)
            metrics.ledger_error("overrun")  # telemetry (issue #13)
            generation = max(0, self.held - context)
            context = min(context, self.held)
        now = self.ctx.clock.now()
        with self.ctx.db.uow() as uow:
            session = uow.session
            context, generation = _settle(self, session, context, generation, now)
            balance_notices.send_raised(session, now=now, settings=self.ctx.settings)
            caps.give_back(
                session,
                assistant_id=self.assistant_id,
                day=self.day,
                tokens=self.held - context - generation,
            )
            if self.capped:
                reached = caps.reached_after_settle(
                    session, assistant_id=self.assistant_id, day=self.day
                )
                if reached is not None:
                    caps.tell_reached(
                        session,
                        account_id=self.account_id,
                        assistant_id=self.assistant_id,
                        reached=reached,
                        now=now,
                    )
            session.add(
                Message(
                    conversation_id=self.conversation_id,
                    role="user",
                    content=self.question,
                    created_at=now,
                )
            )
            reply = Message(
                conversation_id=self.conversation_id,
                role="assistant",
                content=self.answer,
                context_tokens=context,
                generation_tokens=generation,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                hold_id=self.hold_id,
                status=self.status,
                answer_kind=self.kind.value,
                cut_off=self.cut_off,
                created_at=now,
                sources=json.dumps(
                    [] if self.kind is Kind.ABSTAINED else [p.source() for p in self.passages]
                ),
            )
            session.add(reply)
            session.flush()
            self.message_id = reply.id
            # One UPDATE, not a read and a write: the conversation's figures add up in SQL.
            session.execute(
                update(Conversation)
                .where(Conversation.id == self.conversation_id)
                .values(
                    messages=Conversation.messages + 2,
                    context_tokens=Conversation.context_tokens + context,
                    generation_tokens=Conversation.generation_tokens + generation,
                    updated_at=case(  # its last message
                        (Conversation.updated_at < now, literal(now, UTCDateTime())),
                        else_=Conversation.updated_at,
                    ),
                ),
                execution_options={"synchronize_session": False},
            )
            entries = ledger.entries_written(session)  # telemetry (issue #13)
            uow.commit()
        _reported(self, entries, context, generation)  # telemetry (issue #13)


def composed_usage(
    plan: Plan, question: str, read: list[str], count: Callable[[str], int]
) -> Usage:
    """What an answer made without the model costs, counted with the model's tokenizer:
    the question and the passages read (the training context), and the answer given
    (nothing for the fallback, which is the customer's own text)."""
    context = count(question) + sum(count(text) for text in read)
    answer = 0 if plan.kind is Kind.ABSTAINED else count(plan.text)
    return Usage(context, answer, "tokenizer")


def corrected_source(correction: Match) -> Passage:
    """The customer's correction, as the source of its answer."""
    return Passage(
        chunk_id=0,
        file_id=0,
        filename=CORRECTED_ANSWER,
        page=0,
        heading=correction.question,
        text=correction.answer,
        tokens=0,
        score=correction.similarity,
        correction_id=correction.correction_id,
    )


def _pieces(text: str) -> list[str]:
    """A known answer, sent a few words at a time as a model would."""
    words = text.split(" ")
    return [
        " ".join(words[i : i + 6]) + (" " if i + 6 < len(words) else "")
        for i in range(0, len(words), 6)
    ]


def _settle(
    turn: Turn, session: Session, context: int, generation: int, now: dt.datetime
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
        metrics.ledger_error("lost_hold")  # telemetry (issue #13)
    entry = ledger.charge_lost_hold(
        session,
        account_id=turn.account_id,
        hold_id=turn.hold_id,
        context=context,
        generation=generation,
        now=now,
    )
    return entry.context_tokens, entry.generation_tokens


# --- telemetry (issue #13) ----------------------------------------------------------------


def _reported(turn: Turn, entries: list[int], context: int, generation: int) -> None:
    """After the commit: count the turn, and log its hold and entries under the request id."""
    metrics.turn_settled(outcome=turn.status, context=context, generation=generation)
    log.info(
        "chat turn settled",
        extra={
            "hold_id": turn.hold_id,
            "entry_ids": entries,
            "outcome": turn.status,
            "context_tokens": context,
            "generation_tokens": generation,
            "assistant_id": turn.assistant_id,
            "account_id": turn.account_id,
            "message_id": turn.message_id,
        },
    )
