"""Grounded turns through the public API with the real embedder and the real tokenizer:
quotes without the model, the fallback when the documents do not answer, the checked
generation, and what each costs, checked against the ledger."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from chatmeter.answers import grounding
from chatmeter.answers.grounding import PassageView
from chatmeter.chat.counts import text_counter
from chatmeter.context import Context
from chatmeter.knowledge.sentences import split as split_sentences
from chatmeter.knowledge.sentences import unpack
from chatmeter.training.models import Chunk
from tests.answers.support import UNCOVERED, ask
from tests.chat.shop import (
    DOCUMENTS,
    QUESTION,
    Recording,
    answers,
    available,
    open_shop,
    settle_entry,
)
from tests.support.ledger import assert_ledger_settled

pytestmark = pytest.mark.model  # trains with the embedder, counts with the model's tokenizer


def test_quotes_answer_from_the_documents_without_the_model_and_cost_what_they_read_and_say(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    shop = open_shop(ctx, answer_mode="quotes", max_tokens=160, tokens=5_000)

    answer = ask(visitor, shop, QUESTION)

    assert "packages of 5,000 tokens" in answer["answer"]
    assert answer["answer"].endswith("[1]") and answer["abstained"] is False
    assert answer["sources"][0]["title"] == "Buying tokens"
    assert model.calls == 0  # nothing generated: quoted
    (reply,) = answers(ctx)
    assert reply.answer_kind == "quotes" and reply.content == answer["answer"]
    count = text_counter(ctx.provider("local", ""))
    read = [s["passage"] for s in _sources(reply.sources)]
    assert reply.context_tokens == count(QUESTION) + sum(count(text) for text in read)
    assert reply.generation_tokens == count(answer["answer"])
    entry = settle_entry(ctx, reply.hold_id)
    assert (entry.context_tokens, entry.generation_tokens) == (
        reply.context_tokens,
        reply.generation_tokens,
    )
    assert available(ctx, shop.account_id) == 5_000 - reply.context_tokens - reply.generation_tokens
    assert_ledger_settled(ctx)


@pytest.mark.parametrize("mode", ["quotes", "checked", "generated"])
def test_a_question_the_documents_do_not_answer_gets_the_fallback_in_every_mode(
    ctx: Context, visitor: TestClient, model: Recording, mode: str
) -> None:
    shop = open_shop(ctx, answer_mode=mode, tokens=5_000)

    answer = ask(visitor, shop, UNCOVERED)

    assert answer["abstained"] is True and answer["sources"] == []
    assert answer["answer"] == (
        "I'm not sure about that, and I would rather not guess. "
        "Please write to us at owner@example.com."
    )
    assert model.calls == 0  # decided before the model runs
    (reply,) = answers(ctx)
    assert reply.answer_kind == "abstained" and reply.generation_tokens == 0
    assert reply.context_tokens > 0  # the question and the passages read to decide
    assert available(ctx, shop.account_id) == 5_000 - reply.context_tokens
    assert_ledger_settled(ctx)


def test_the_customers_own_fallback_message_is_said(ctx: Context, visitor: TestClient) -> None:
    shop = open_shop(ctx, fallback_message="Ask Maria at the counter, she knows.", tokens=5_000)
    assert ask(visitor, shop, UNCOVERED)["answer"] == "Ask Maria at the counter, she knows."


def test_a_checked_answer_keeps_only_sentences_the_passages_support(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    shop = open_shop(ctx, answer_mode="checked", max_tokens=60, tokens=5_000)

    answer = ask(visitor, shop, QUESTION)

    assert model.calls == 1
    (reply,) = answers(ctx)
    # The model's text is not compared: whatever it wrote, what is said is either
    # sentences the documents support or the fallback.
    checker = grounding.SentenceChecker(
        ctx.sentence_vectors, [PassageView(name, text) for name, text in DOCUMENTS.items()]
    )
    if reply.answer_kind == "abstained":
        assert answer["abstained"] is True and "owner@example.com" in answer["answer"]
    else:
        assert reply.answer_kind == "checked"
        said, rest = grounding.split_generated(answer["answer"] + "\n")
        assert said and not rest.strip()
        assert all(checker.supported(sentence) for sentence in said)
    assert reply.completion_tokens > 0  # the model generated, and that is charged
    assert reply.generation_tokens == reply.completion_tokens
    assert_ledger_settled(ctx)


def _sources(raw: str) -> list[dict[str, object]]:
    import json

    return list(json.loads(raw))


def test_training_stores_each_passages_sentence_vectors_and_a_turn_embeds_no_sentence(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, answer_mode="quotes", max_tokens=160, tokens=5_000)
    with ctx.db.read() as session:
        chunks = session.scalars(select(Chunk).where(Chunk.assistant_id == shop.assistant_id))
        stored = [(chunk.text, chunk.sentence_vectors) for chunk in chunks]
    assert len(stored) >= len(DOCUMENTS)
    for text, packed in stored:
        said = split_sentences(text)
        vectors = unpack(packed, said)
        assert vectors is not None and vectors.shape == (len(said), 384)
        fresh = ctx.embedder.embed(said)
        assert float(np.min(np.sum(vectors * fresh, axis=1))) > 0.999  # float16 of the same

    answer = ask(visitor, shop, QUESTION)

    assert "packages of 5,000 tokens" in answer["answer"]
    assert len(ctx.sentence_vectors) == 0  # grounded on the stored vectors: none embedded now


def test_passages_trained_before_sentences_were_stored_are_grounded_the_same(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, answer_mode="quotes", max_tokens=160, tokens=5_000)
    stored = ask(visitor, shop, QUESTION)["answer"]
    with ctx.db.uow() as uow:
        uow.session.execute(
            update(Chunk)
            .where(Chunk.assistant_id == shop.assistant_id)
            .values(sentence_vectors=None)
        )
        uow.commit()

    embedded = ask(visitor, shop, QUESTION)["answer"]

    assert embedded == stored  # quoted, not generated: the same sentences chosen
    assert len(ctx.sentence_vectors) > 0  # this time the turn embedded them
