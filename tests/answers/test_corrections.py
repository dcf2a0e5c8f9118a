"""The customer's corrections through the REST API and the CLI, on SQLite and PostgreSQL:
written, replaced, changed and removed; another account's never reached; bad input
refused with nothing written; and the next visitor asking gets the corrected answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.answers import matching
from chatmeter.answers.models import Correction
from chatmeter.context import Context
from chatmeter.retrieval.search import CORRECTED_ANSWER
from tests.answers.support import GIFT_CARDS, UNCOVERED, ask, corrections_of
from tests.chat.shop import open_shop
from tests.support.cli import Operator

pytestmark = pytest.mark.model  # the question's embedding: the embedder, and chat turns


def url(assistant_id: int, correction_id: int | None = None) -> str:
    tail = "" if correction_id is None else f"/{correction_id}"
    return f"/api/v1/assistants/{assistant_id}/corrections{tail}"


def test_a_correction_is_written_replaced_changed_and_removed(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, train=False)
    owner = shop.owner(visitor)

    made = owner.post(
        url(shop.assistant_id), json={"question": f"  {UNCOVERED} ", "answer": GIFT_CARDS}
    )
    assert made.status_code == 201, made.text
    first = made.json()
    assert (first["question"], first["answer"]) == (UNCOVERED, GIFT_CARDS)
    assert first["assistant_id"] == shop.assistant_id
    with ctx.db.read() as session:
        stored = session.scalar(select(Correction))
        assert stored is not None
        vector = np.frombuffer(stored.embedding, dtype="<f4")
    assert vector.shape == (ctx.embedder.dimensions,)
    assert np.allclose(vector, ctx.embedder.embed([UNCOVERED])[0], atol=1e-6)

    # The same question, written otherwise: its answer replaced, still one correction.
    again = owner.post(
        url(shop.assistant_id),
        json={"question": "do you sell GIFT cards for birthdays", "answer": "No, sorry."},
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first["id"]
    assert owner.get(url(shop.assistant_id)).json() == [again.json()]

    changed = owner.put(
        url(shop.assistant_id, first["id"]),
        json={"question": "Can I buy a gift card?", "answer": GIFT_CARDS},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["question"] == "Can I buy a gift card?"
    with ctx.db.read() as session:
        stored = session.get(Correction, first["id"])
        assert stored is not None
        vector = np.frombuffer(stored.embedding, dtype="<f4")
    assert np.allclose(vector, ctx.embedder.embed(["Can I buy a gift card?"])[0], atol=1e-6)

    second = owner.post(url(shop.assistant_id), json={"question": "Hours?", "answer": "9 to 5."})
    clash = owner.put(
        url(shop.assistant_id, second.json()["id"]),
        json={"question": "can i buy a gift card", "answer": "x"},
    )
    assert clash.status_code == 409, clash.text
    assert clash.json()["error"]["code"] == "conflict"

    assert owner.delete(url(shop.assistant_id, first["id"])).status_code == 204
    assert [c["id"] for c in owner.get(url(shop.assistant_id)).json()] == [second.json()["id"]]
    assert owner.delete(url(shop.assistant_id, first["id"])).status_code == 404


def test_the_next_visitor_gets_the_corrected_answer(ctx: Context, visitor: TestClient) -> None:
    shop = open_shop(ctx, tokens=20_000)
    before = ask(visitor, shop, UNCOVERED)
    assert before["abstained"] is True
    made = shop.owner(visitor).post(
        url(shop.assistant_id), json={"question": UNCOVERED, "answer": GIFT_CARDS}
    )
    assert made.status_code == 201, made.text

    after = ask(visitor, shop, "Do you sell birthday gift cards?")

    assert after["answer"] == GIFT_CARDS
    assert after["abstained"] is False
    assert [s["title"] for s in after["sources"]] == [CORRECTED_ANSWER]


def test_another_accounts_assistant_and_corrections_are_not_found(
    ctx: Context, visitor: TestClient
) -> None:
    alice = open_shop(ctx, email="alice@example.com", train=False)
    bob = open_shop(ctx, email="bob@example.com", train=False)
    made = alice.owner(visitor).post(
        url(alice.assistant_id), json={"question": UNCOVERED, "answer": GIFT_CARDS}
    )
    correction = made.json()["id"]
    body = {"question": "Taken over?", "answer": "Yes."}
    as_bob = bob.owner(visitor)
    calls = [
        ("GET", f"/api/v1/assistants/{alice.assistant_id}/questions", None),
        ("GET", url(alice.assistant_id), None),
        ("POST", url(alice.assistant_id), body),
        ("PUT", url(alice.assistant_id, correction), body),
        ("DELETE", url(alice.assistant_id, correction), None),
        # Bob's own assistant, Alice's correction:
        ("PUT", url(bob.assistant_id, correction), body),
        ("DELETE", url(bob.assistant_id, correction), None),
    ]
    for method, path, json in calls:
        answer = as_bob.request(method, path, json=json)
        missing = as_bob.request(method, path.replace(str(correction), "999999"), json=json)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "not_found"
        assert missing.status_code == 404
    assert corrections_of(ctx) == [(alice.assistant_id, alice.account_id, UNCOVERED, GIFT_CARDS)]


BAD_BODIES: list[Any] = [
    {"question": "", "answer": "Yes."},
    {"question": "   ", "answer": "Yes."},
    {"question": "Q?", "answer": " \n "},
    {"question": "q" * 501, "answer": "Yes."},
    {"question": "Q?", "answer": "a" * 4001},
    {"question": "Q\x00?", "answer": "Yes."},
    {"question": "Q?", "answer": "Y\x00es."},
    {"question": 5, "answer": "Yes."},
    {"question": ["Q?"], "answer": "Yes."},
    {"question": "Q?"},
    {"answer": "Yes."},
    {"question": "Q?", "answer": "Yes.", "extra": 1},
    "Q?",
    None,
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_input_is_refused_with_nothing_written(
    ctx: Context, visitor: TestClient, body: Any
) -> None:
    shop = open_shop(ctx, train=False)
    owner = shop.owner(visitor)
    kept = owner.post(url(shop.assistant_id), json={"question": "Hours?", "answer": "9 to 5."})
    before = corrections_of(ctx)

    for method, path in (
        ("POST", url(shop.assistant_id)),
        ("PUT", url(shop.assistant_id, kept.json()["id"])),
    ):
        answer = owner.request(method, path, json=body)
        assert answer.status_code == 422, (method, body, answer.text)
        assert answer.json()["error"]["code"] == "invalid_input"
    assert corrections_of(ctx) == before


def test_an_assistant_keeps_at_most_so_many_corrections(
    ctx: Context, visitor: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matching, "MAX_CORRECTIONS", 2)
    shop = open_shop(ctx, train=False)
    owner = shop.owner(visitor)
    for question in ("Hours?", "Parking?"):
        made = owner.post(url(shop.assistant_id), json={"question": question, "answer": "Yes."})
        assert made.status_code == 201, made.text

    refused = owner.post(url(shop.assistant_id), json={"question": "Pets?", "answer": "Yes."})
    replaced = owner.post(url(shop.assistant_id), json={"question": "hours", "answer": "9-5."})

    assert refused.status_code == 422
    assert "at most 2 corrections" in refused.json()["error"]["message"]
    assert replaced.status_code == 201
    assert [q for _, _, q, _ in corrections_of(ctx)] == ["hours", "Parking?"]


@pytest.fixture
def operator(db_url: str, tmp_path: Path) -> Operator:
    return Operator(
        {
            "CHATMETER_DATABASE_URL": db_url,
            "CHATMETER_ENV": "test",
            "CHATMETER_DATA_DIR": str(tmp_path / "var"),
            "CHATMETER_NOW": "2026-11-15T12:00:00Z",
            "CHATMETER_WORKER": "none",
            "CHATMETER_DEMO": "false",
        },
        tmp_path,
    )


def test_corrections_and_questions_from_the_cli(
    ctx: Context, visitor: TestClient, operator: Operator
) -> None:
    shop = open_shop(ctx, tokens=20_000)
    ask(visitor, shop, UNCOVERED)
    assistant = str(shop.assistant_id)

    questions = operator.json("assistants", "questions", assistant)
    assert [(q["question"], q["covered"]) for q in questions["unanswered"]] == [(UNCOVERED, False)]
    assert UNCOVERED in operator.run("assistants", "questions", assistant)

    added = operator.json(
        "assistants",
        "corrections",
        "add",
        assistant,
        "--question",
        UNCOVERED,
        "--answer",
        GIFT_CARDS,
    )
    assert (added["question"], added["answer"]) == (UNCOVERED, GIFT_CARDS)
    assert operator.json("assistants", "corrections", "list", assistant) == [
        added | {"created_at": added["created_at"], "updated_at": added["updated_at"]}
    ]
    assert GIFT_CARDS in operator.run("assistants", "corrections", "list", assistant)
    assert operator.json("assistants", "questions", assistant)["unanswered"][0]["covered"] is True

    refused = operator.run(
        "assistants", "corrections", "add", assistant, "--question", " ", "--answer", "x", code=1
    )
    assert "the question is empty" in refused
    assert "no such assistant" in operator.run("assistants", "questions", "999", code=1)
    removed = operator.run("assistants", "corrections", "remove", assistant, str(added["id"]))
    assert f"correction {added['id']} removed" in removed
    assert "no corrections" in operator.run("assistants", "corrections", "list", assistant)
    assert "no such correction" in operator.run(
        "assistants", "corrections", "remove", assistant, str(added["id"]), code=1
    )
