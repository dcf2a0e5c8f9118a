"""Retrieval finds the passage that answers a visitor's question: recall@3 over docs/help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from chatmeter.retrieval.search import retrieve
from chatmeter.training import service as training
from tests.support.accounts import new_account

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

HELP = Path(__file__).parents[2] / "docs" / "help"
QUESTIONS = json.loads((Path(__file__).parent / "questions.json").read_text())


def train_help_center(ctx: Context) -> int:
    account = new_account(ctx)
    with ctx.db.uow() as uow:
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account,
            fields=AssistantFields(name="Help Center"),
            now=ctx.clock.now(),
        )
        for path in sorted(HELP.iterdir()):
            training.upload(
                uow.session,
                assistant=assistant,
                filename=path.name,
                data=path.read_bytes(),
                max_bytes=10**7,
                now=ctx.clock.now(),
            )
        uow.commit()
        assistant_id = assistant.id
    assert training.process_queue(ctx) == {"ready": len(list(HELP.iterdir())), "failed": 0}
    return assistant_id


def normalised(text: str) -> str:
    return " ".join(text.split())


def search(
    ctx: Context, assistant_id: int, question: str, *, passages: int = 3, budget: int = 100_000
) -> list:  # type: ignore[type-arg]
    with ctx.db.read() as session:
        return retrieve(
            session,
            assistant_id=assistant_id,
            question=question,
            embedder=ctx.embedder,
            vectors=ctx.vectors,
            passages=passages,
            budget=budget,
        )


def test_help_center_retrieval(ctx: Context) -> None:
    """One training run (it is the slow part), three promises."""
    assistant_id = train_help_center(ctx)

    # 1. recall@3 >= 0.9 over the question set
    assert len(QUESTIONS) >= 30
    misses = []
    for question, filename, phrase in QUESTIONS:
        found = search(ctx, assistant_id, question)
        if not any(
            p.filename == filename and normalised(phrase) in normalised(p.text) for p in found
        ):
            misses.append((question, [(p.filename, p.text[:60]) for p in found]))
    recall = 1 - len(misses) / len(QUESTIONS)
    assert recall >= 0.9, f"recall@3 = {recall:.2f}; missed: {misses}"

    # 2. the passages handed to the prompt fit the context budget
    found = search(ctx, assistant_id, "How do tokens renew?", passages=5, budget=150)
    assert found and sum(p.tokens for p in found) <= 150

    # 3. deleting a file removes its passages from the very next search
    question = "Where do I paste the embed snippet?"
    widget = next(
        p for p in search(ctx, assistant_id, question) if p.filename == "embedding-the-widget.md"
    )
    with ctx.db.uow() as uow:
        assistant = assistants.get_assistant(uow.session, account_id=1, assistant_id=assistant_id)
        training.delete_file(
            uow.session, assistant=assistant, file_id=widget.file_id, now=ctx.clock.now()
        )
        uow.commit()
    after = search(ctx, assistant_id, question)
    assert after and all(p.filename != "embedding-the-widget.md" for p in after)
