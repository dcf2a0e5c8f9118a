"""Admitting a chat turn: admit → retrieve → reserve, everything before the answer.

``start_turn`` does everything that can refuse a turn before a byte of the
answer is sent (unknown or inactive assistant, rate limits, message size, a
full queue, not enough tokens), so refusals are plain HTTP errors. It returns
the ``Turn`` (``chat.turn``) that streams the answer and settles it.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.accounts import service as accounts
from chatmeter.answers import matching, modes
from chatmeter.answers.grounding import PassageView, SentenceChecker
from chatmeter.answers.modes import Kind
from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.chat import caps, prompt
from chatmeter.chat.counts import text_counter
from chatmeter.chat.models import Conversation, Message
from chatmeter.chat.queue import Ticket
from chatmeter.chat.turn import ChatServices, Turn, composed_usage, corrected_source
from chatmeter.errors import InsufficientTokens, InvalidInput, Unavailable
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import HoldOwner
from chatmeter.llm.base import ChatMessage, GenerationRequest, Provider, ProviderError, Usage
from chatmeter.llm.rates import charge
from chatmeter.retrieval.search import retrieve
from chatmeter.storable import NUL_MESSAGE, has_nul

log = logging.getLogger("chatmeter.chat")

# The question's embedding (~5 ms of one core, the turn's largest cost) is made here
# while the turn's thread reads the assistant's conversation, account and passages,
# which mostly wait on the database. Started only once the rate limits let the
# message in, so a refused visitor costs no model time.
_EMBEDDING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chatmeter-question")


def warm_up(ctx: ChatServices) -> None:
    """Load the embedding model and the bundled model now, not on the first visitor's turn.

    Served without it, the first crowd after a start waits seconds for both to load.
    """
    ctx.embedder.embed(["warm up"])
    if any(choice.provider == "local" for choice in ctx.models.choices):
        provider = ctx.provider("local", "")
        provider.count_prompt_tokens([ChatMessage("user", "warm up")])


def start_turn(
    ctx: ChatServices,
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
        question_vector = _EMBEDDING.submit(_embed, ctx, question)
        conversation, history = _history(session, assistant, conversation_id)
        caps.check_turns(assistant, conversation)
        account = accounts.get_account(session, account_id=assistant.account_id)
        timezone = account.timezone
        fallback = modes.fallback_text(assistant.fallback_message, account.contact_email)

        provider = _provider(ctx, assistant)
        ticket = None
        if queue:
            ticket = ctx.generation_queue(provider).admit(account_id=assistant.account_id)
        try:
            return _prepare(
                ctx,
                session,
                assistant,
                provider,
                ticket,
                question,
                question_vector,
                history,
                conversation_id,
                visitor,
                timezone,
                fallback,
            )
        except BaseException:
            if ticket is not None:
                ticket.leave()
            raise


def _embed(ctx: ChatServices, question: str) -> npt.NDArray[np.float32]:
    vector: npt.NDArray[np.float32] = ctx.embedder.embed([question])[0]
    return vector


def _provider(ctx: ChatServices, assistant: Assistant) -> Provider:
    """The assistant's model; ``Unavailable`` if it cannot be had (no longer offered, broken)."""
    try:
        return ctx.provider(assistant.provider, assistant.model)
    except (ValueError, ProviderError) as exc:
        log.error("assistant %s cannot use its model: %s", assistant.id, exc)
        raise Unavailable() from exc


def _prepare(
    ctx: ChatServices,
    session: Session,
    assistant: Assistant,
    provider: Provider,
    ticket: Ticket | None,
    question: str,
    embedding: Future[npt.NDArray[np.float32]],
    history: list[tuple[str, str]],
    conversation_id: str | None,
    visitor: str,
    timezone: str,
    fallback: str,
) -> Turn:
    try:
        count = text_counter(provider)
        # The reading session of the turn's start, still open: one transaction less.
        try:
            passages = retrieve(
                session,
                assistant_id=assistant.id,
                question=question,
                embedder=ctx.embedder,
                vectors=ctx.vectors,
                passages=assistant.passages,
                budget=assistant.context_budget,
                count_tokens=count,
                query=embedding.result,  # the keyword search runs while it is made
                version=assistant.index_version,  # read with the assistant, just now
            )
            question_vector = embedding.result()
            correction = matching.best_correction(
                session, assistant_id=assistant.id, question_vector=question_vector
            )
        finally:
            session.close()  # its connection goes back before the reservation takes one
        views = [PassageView(p.heading, p.text, p.sentence_vectors) for p in passages]
        answer = modes.plan(
            mode=assistant.answer_mode,
            question=question,
            question_vector=question_vector,
            passages=views,
            passage_cosine=max((p.similarity for p in passages), default=0.0),
            correction=correction,
            fallback=fallback,
            embed_sentences=ctx.sentence_vectors,
            fits=lambda text: count(text) <= assistant.max_tokens,
        )
        if answer.text:  # known already (a correction, quotes, the fallback): no prompt
            read = [] if answer.kind is Kind.CORRECTED else [p.text for p in passages]
            known: Usage | None = composed_usage(answer, question, read, count)
            messages: list[ChatMessage] = [ChatMessage("user", question)]
            if correction is not None and answer.kind is Kind.CORRECTED:
                passages = [corrected_source(correction)]
            elif answer.kind is Kind.ABSTAINED:
                passages = []  # the fallback draws on none of them
        else:
            known = None
            messages = prompt.build(
                instructions=assistant.instructions,
                passages=[
                    prompt.PassageText(i, p.heading, p.filename, p.text)
                    for i, p in enumerate(passages, 1)
                ],
                history=prompt.trim_history(
                    history, budget=ctx.settings.chat_history_tokens, count_tokens=count
                ),
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
    if known is not None:  # the hold is exactly what the known answer costs
        prompt_tokens, max_tokens = known.prompt_tokens, max(1, known.completion_tokens)
        reserve = sum(charge(known, rate))
    else:
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
            entries = ledger.entries_written(uow.session)  # telemetry (issue #13)
            uow.commit()
    except InsufficientTokens as exc:  # the visitor hears only "unavailable"
        raise Unavailable() from exc
    except caps.CapReached as reached:
        caps.report_refusal(
            ctx.db,
            account_id=assistant.account_id,
            assistant_id=assistant.id,
            reached=reached,
            now=now,
        )
        raise Unavailable() from reached
    log.info(  # telemetry (issue #13): the hold and its entry, under the request's id
        "chat turn reserved",
        extra={"hold_id": hold.id, "entry_ids": entries, "tokens": reserve},
    )
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
        capped=bool(assistant.daily_token_cap or assistant.monthly_token_cap),
        show_sources=assistant.show_sources,
        ticket=ticket,
        plan=answer,
        known_usage=known,
        fallback=fallback,
        checker=(
            SentenceChecker(ctx.sentence_vectors, views) if answer.kind is Kind.CHECKED else None
        ),
    )
    ctx.hold_keeper.keep(hold.id, turn.stop)
    return turn


def _history(
    session: Session, assistant: Assistant, public_id: str | None
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
    session: Session, assistant: Assistant, public_id: str | None, visitor: str, now: dt.datetime
) -> Conversation:
    if public_id:
        existing = session.scalar(
            select(Conversation).where(
                Conversation.public_id == public_id, Conversation.assistant_id == assistant.id
            )
        )
        if existing is not None:
            return existing
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
