"""The parts of hybrid search: rank fusion, keyword search, and the per-process vector cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.retrieval import keyword
from chatmeter.retrieval.search import RRF_K, fuse
from chatmeter.retrieval.vectors import VectorCache
from chatmeter.training import service as training
from chatmeter.training.models import Chunk
from tests.support.accounts import new_account


def test_fusion_rewards_agreement() -> None:
    fused = fuse([[1, 2, 3], [3, 2, 4]])
    assert {item for item, _ in fused[:2]} == {2, 3}  # in both lists beats top of one
    assert dict(fused)[2] == 2 / (RRF_K + 2)


@given(st.lists(st.lists(st.integers(0, 50), unique=True, max_size=20), max_size=4))
def test_fusion_scores_every_item_once_best_first(rankings: list[list[int]]) -> None:
    fused = fuse(rankings)
    assert sorted(item for item, _ in fused) == sorted({i for r in rankings for i in r})
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)


def make_assistant(
    ctx: Context,
    texts: list[str],
    vectors: np.ndarray | None = None,
    *,
    account: int | None = None,
) -> tuple[int, list[int]]:
    """An assistant with one trained file whose chunks carry the given vectors (or zeros)."""
    account = account if account is not None else new_account(ctx)
    if vectors is None:
        vectors = np.zeros((len(texts), 3), dtype=np.float32)
    with ctx.db.uow() as uow:
        assistant = assistants.create_assistant(
            uow.session, account_id=account, fields=AssistantFields(name="A"), now=ctx.clock.now()
        )
        file = training.upload(
            uow.session,
            assistant=assistant,
            filename="f.txt",
            data=b"x",
            max_bytes=100,
            now=ctx.clock.now(),
        ).file
        chunks = [
            Chunk(
                assistant_id=assistant.id,
                file_id=file.id,
                ordinal=i,
                page=1,
                heading="",
                text=text,
                tokens=len(text.split()),
                embedding=vectors[i].astype("<f4").tobytes(),
            )
            for i, text in enumerate(texts)
        ]
        uow.session.add_all(chunks)
        uow.session.flush()
        ids = [c.id for c in chunks]
        uow.commit()
        return assistant.id, ids


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_keyword_search_ranks_matching_passages(ctx: Context) -> None:
    texts = [
        "Tokens renew on the first day of each month.",
        "The widget appears on allowed domains only.",
        "Packages of 5,000 tokens are billed monthly.",
    ]
    assistant_id, ids = make_assistant(ctx, texts, np.eye(3, dtype=np.float32))
    with ctx.db.read() as session:
        found = keyword.search(
            session, assistant_id=assistant_id, question="When do my tokens renew?", limit=5
        )
        other = keyword.search(session, assistant_id=assistant_id + 1, question="tokens", limit=5)
        nothing = keyword.search(session, assistant_id=assistant_id, question="?!", limit=5)
    assert found[0] == ids[0] and ids[1] not in found
    assert other == [] and nothing == []


def test_the_vector_cache_notices_changes_made_by_another_process(ctx: Context) -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)])
    assistant_id, ids = make_assistant(ctx, ["a", "b", "c"], vectors)
    here, elsewhere = VectorCache(), VectorCache()  # one per process
    with ctx.db.read() as session:
        assert here.search(session, assistant_id=assistant_id, query=unit(0, 1, 0.1), limit=2) == [
            ids[1],
            ids[2],
        ]
        elsewhere.search(session, assistant_id=assistant_id, query=unit(1, 0, 0), limit=1)
    with ctx.db.uow() as uow:  # "elsewhere" deletes the file: every chunk goes
        assistant = assistants.get_assistant(uow.session, account_id=1, assistant_id=assistant_id)
        (file,) = training.list_files(uow.session, assistant=assistant)
        training.delete_file(uow.session, assistant=assistant, file_id=file.id, now=ctx.clock.now())
        uow.commit()
    with ctx.db.read() as session:
        assert here.search(session, assistant_id=assistant_id, query=unit(0, 1, 0), limit=2) == []


@pytest.mark.model
def test_a_passage_that_left_the_assistant_never_reaches_its_prompt(ctx: Context) -> None:
    """The vector cache may still rank a chunk that has since gone to another assistant
    (it is a cache, checked by version); the final read asks by assistant, so another
    assistant's text never reaches this one's prompt."""
    from sqlalchemy import update

    from chatmeter.retrieval.search import retrieve
    from tests.chat.shop import QUESTION, open_shop

    alice = open_shop(ctx, email="alice@example.com", tokens=0)
    bob = open_shop(ctx, email="bob@example.com", tokens=0, train=False)
    cache = VectorCache(background=False)

    def passages(assistant_id: int) -> list[int]:
        with ctx.db.read() as session:
            found = retrieve(
                session,
                assistant_id=assistant_id,
                question=QUESTION,
                embedder=ctx.embedder,
                vectors=cache,
                passages=4,
                budget=2_000,
            )
        return [p.chunk_id for p in found]

    assert passages(alice.assistant_id)  # the cache now holds Alice's vectors
    with ctx.db.uow() as uow:  # her chunks become Bob's, her index version unchanged
        uow.session.execute(
            update(Chunk)
            .where(Chunk.assistant_id == alice.assistant_id)
            .values(assistant_id=bob.assistant_id)
        )
        uow.commit()
    assert passages(alice.assistant_id) == []


def test_the_vector_cache_gives_a_passages_cosine_only_for_the_assistants_own(
    ctx: Context,
) -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0)])
    account = new_account(ctx)
    assistant_id, ids = make_assistant(ctx, ["a", "b", "c"], vectors, account=account)
    _, other_ids = make_assistant(ctx, ["d"], np.stack([unit(1, 0, 0)]), account=account)
    cache = VectorCache(approximate_above=1, background=False)  # rows in the index's order
    query = unit(1, 0, 0)
    with ctx.db.read() as session:
        cache.search(session, assistant_id=assistant_id, query=query, limit=3)
        found = cache.similarities(
            session,
            assistant_id=assistant_id,
            chunk_ids=[ids[2], ids[1], other_ids[0], ids[0]],
            query=query,
        )
    assert found == pytest.approx([float(unit(1, 1, 0) @ query), 0.0, 0.0, 1.0])


@pytest.mark.model
def test_retrieved_passages_carry_the_questions_cosine_with_their_stored_vectors(
    ctx: Context,
) -> None:
    from chatmeter.retrieval.search import retrieve
    from tests.chat.shop import QUESTION, open_shop

    shop = open_shop(ctx, tokens=0)
    with ctx.db.read() as session:
        found = retrieve(
            session,
            assistant_id=shop.assistant_id,
            question=QUESTION,
            embedder=ctx.embedder,
            vectors=ctx.vectors,
            passages=3,
            budget=1_000,
        )
        stored = {
            chunk.id: np.frombuffer(chunk.embedding, dtype="<f4")
            for chunk in session.query(Chunk).filter(Chunk.assistant_id == shop.assistant_id)
        }
    question = ctx.embedder.embed([QUESTION])[0]
    assert found and all(p.similarity > 0 for p in found)
    for passage in found:
        cosine = float(stored[passage.chunk_id] @ question)
        assert passage.similarity == pytest.approx(cosine, abs=1e-5)
