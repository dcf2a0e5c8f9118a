"""An assistant's Answers page: unanswered, poorly rated and frequent questions, "Write
the answer" with the question filled in, corrections edited and deleted; the settings'
"How answers are made" and "When it does not know"; what a conversation shows of each
answer. Bad input is explained and changes nothing; another account's ids are a 404."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.answers.models import Correction
from chatmeter.answers.modes import MODE_LABELS
from chatmeter.assistants.models import Assistant
from chatmeter.chat.models import Conversation
from chatmeter.context import Context
from chatmeter.training import service as training
from tests.answers.support import GIFT_CARDS, UNCOVERED, ask, corrections_of
from tests.chat.shop import DOCUMENTS, Shop
from tests.support.accounts import add_tokens
from tests.support.panel import Panel

pytestmark = pytest.mark.model  # trained files, chat turns and corrections use the embedder


def text_of(response: object) -> str:
    return html.unescape(response.text)  # type: ignore[attr-defined]


def trained_assistant(ctx: Context, panel: Panel) -> Shop:
    """A signed-up owner's assistant, trained on the shop's documents, with tokens."""
    panel.sign_up()
    created = panel.post("/panel/assistants/new", {"name": "Help Center"})
    assert created.status_code == 303, created.text
    assistant_id = int(re.findall(r"/assistants/(\d+)/", created.headers["location"])[0])
    token = panel.csrf(f"/panel/assistants/{assistant_id}/training")
    uploaded = panel.client.post(
        f"/panel/assistants/{assistant_id}/files",
        files=[("files", (name, text.encode(), "text/plain")) for name, text in DOCUMENTS.items()],
        headers={"X-CSRF-Token": token},
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    assert training.process_queue(ctx)["ready"] == len(DOCUMENTS)
    with ctx.db.read() as session:
        assistant = session.get(Assistant, assistant_id)
        assert assistant is not None
        shop = Shop(assistant.account_id, assistant.id, assistant.public_key, "")
    add_tokens(ctx, shop.account_id, 20_000)
    return shop


def test_the_customer_answers_what_the_assistant_could_not(ctx: Context, panel: Panel) -> None:
    shop = trained_assistant(ctx, panel)
    page = f"/panel/assistants/{shop.assistant_id}/answers"
    empty = text_of(panel.client.get(page))
    assert "No unanswered questions." in empty
    assert "No answers written yet." in empty

    visitor = TestClient(panel.client.app)
    said = ask(visitor, shop, UNCOVERED)
    assert said["abstained"] is True
    voted = visitor.post(
        f"/api/v1/public/{shop.public_key}/messages/{said['message_id']}/rating",
        json={"conversation_id": said["conversation_id"], "rating": "down"},
    )
    assert voted.status_code == 200

    listed = panel.client.get(page)
    assert listed.status_code == 200
    shown = text_of(listed)
    for section in ("unanswered", "poorly-rated", "frequent"):
        block = shown.split(f'data-testid="{section}"')[1].split("</section>")[0]
        assert UNCOVERED in block, section
    write = re.search(r'href="(/panel/assistants/\d+/answers/new\?question=[^"]+)"', listed.text)
    assert write, "a Write the answer link"
    form = panel.client.get(html.unescape(write[1]))
    assert form.status_code == 200
    assert f">{UNCOVERED}</textarea>" in text_of(form)

    refused = panel.post(
        f"/panel/assistants/{shop.assistant_id}/corrections",
        {"question": UNCOVERED, "answer": "   "},
        page=page,
    )
    assert refused.status_code == 422
    assert "The answer is empty." in text_of(refused)
    assert f">{UNCOVERED}</textarea>" in text_of(refused)  # the form as it was sent
    assert corrections_of(ctx) == []

    saved = panel.post(
        f"/panel/assistants/{shop.assistant_id}/corrections",
        {"question": UNCOVERED, "answer": GIFT_CARDS},
        page=page,
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{page}?done=saved"
    after = text_of(panel.client.get(saved.headers["location"]))
    assert "The answer is saved." in after
    assert GIFT_CARDS in after.split('data-testid="corrections"')[1]
    assert (
        "Write the answer" not in after.split('data-testid="unanswered"')[1].split("</section>")[0]
    )
    assert ask(visitor, shop, UNCOVERED)["answer"] == GIFT_CARDS

    ((correction_id,),) = [(c,) for c in re.findall(r'data-correction="(\d+)"', after)]
    edit = f"/panel/assistants/{shop.assistant_id}/corrections/{correction_id}"
    assert GIFT_CARDS in text_of(panel.client.get(edit))
    changed = panel.post(edit, {"question": UNCOVERED, "answer": "Gift cards: at the counter."})
    assert changed.status_code == 303
    assert corrections_of(ctx)[0][3] == "Gift cards: at the counter."
    too_long = panel.post(edit, {"question": "q" * 501, "answer": "x"})
    assert too_long.status_code == 422
    assert "The question is longer than 500 characters." in text_of(too_long)
    assert corrections_of(ctx)[0][2] == UNCOVERED

    removed = panel.post(f"{edit}/delete", {}, page=page)
    assert removed.status_code == 303
    assert corrections_of(ctx) == []
    assert panel.client.get(edit).status_code == 404


def test_a_conversation_shows_how_each_answer_was_made_and_its_rating(
    ctx: Context, panel: Panel
) -> None:
    shop = trained_assistant(ctx, panel)
    visitor = TestClient(panel.client.app)
    said = ask(visitor, shop, UNCOVERED)
    visitor.post(
        f"/api/v1/public/{shop.public_key}/messages/{said['message_id']}/rating",
        json={"conversation_id": said["conversation_id"], "rating": "up"},
    )
    panel.post(
        f"/panel/assistants/{shop.assistant_id}/corrections",
        {"question": UNCOVERED, "answer": GIFT_CARDS},
        page=f"/panel/assistants/{shop.assistant_id}/answers",
    )
    corrected = ask(visitor, shop, UNCOVERED, said["conversation_id"])

    with ctx.db.read() as session:
        conversation_id = session.scalar(select(Conversation.id))
    page = text_of(
        panel.client.get(f"/panel/assistants/{shop.assistant_id}/conversations/{conversation_id}")
    )
    assert f'data-testid="abstained-{said["message_id"]}">Said it did not know<' in page
    assert f'data-testid="rating-{said["message_id"]}">Visitor: helpful<' in page
    assert f'data-testid="corrected-{corrected["message_id"]}">Corrected answer<' in page


def test_the_settings_say_how_answers_are_made_and_what_it_says_when_it_does_not_know(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up("owner@example.com")
    created = panel.post("/panel/assistants/new", {"name": "Help Center"})
    assistant_id = int(re.findall(r"/assistants/(\d+)/", created.headers["location"])[0])
    settings = f"/panel/assistants/{assistant_id}"
    page = text_of(panel.client.get(settings))
    for label in MODE_LABELS.values():
        assert label in page
    assert 'value="quotes" checked' in page
    assert "When it does not know" in page
    assert "placeholder=\"I'm not sure about that" in page and "owner@example.com" in page

    saved = panel.post(
        settings, {"answer_mode": "checked", "fallback_message": "Ask us at the counter."}
    )
    assert saved.status_code == 303, saved.text
    refused = panel.post(settings, {"answer_mode": "guess", "fallback_message": "x" * 501})
    assert refused.status_code == 422
    with ctx.db.read() as session:
        stored = session.get(Assistant, assistant_id)
        assert stored is not None
        assert (stored.answer_mode, stored.fallback_message) == (
            "checked",
            "Ask us at the counter.",
        )
    again = text_of(panel.client.get(settings))
    assert 'value="checked" checked' in again
    assert ">Ask us at the counter.</textarea>" in again


def test_another_accounts_answers_and_corrections_are_not_found(ctx: Context, panel: Panel) -> None:
    alice = trained_assistant(ctx, panel)
    panel.post(
        f"/panel/assistants/{alice.assistant_id}/corrections",
        {"question": UNCOVERED, "answer": GIFT_CARDS},
        page=f"/panel/assistants/{alice.assistant_id}/answers",
    )
    with ctx.db.read() as session:
        correction_id = session.scalar(select(Correction.id))

    bob = Panel(TestClient(panel.client.app, base_url="http://127.0.0.1"))
    bob.sign_up("bob@example.com")
    created = bob.post("/panel/assistants/new", {"name": "Bob's"})
    bobs = int(re.findall(r"/assistants/(\d+)/", created.headers["location"])[0])
    own_page = f"/panel/assistants/{bobs}/answers"
    for path in (
        f"/panel/assistants/{alice.assistant_id}/answers",
        f"/panel/assistants/{alice.assistant_id}/answers/new",
        f"/panel/assistants/{alice.assistant_id}/corrections/{correction_id}",
        f"/panel/assistants/{bobs}/corrections/{correction_id}",
    ):
        assert bob.client.get(path).status_code == 404, path
    for path in (
        f"/panel/assistants/{alice.assistant_id}/corrections",
        f"/panel/assistants/{alice.assistant_id}/corrections/{correction_id}",
        f"/panel/assistants/{alice.assistant_id}/corrections/{correction_id}/delete",
        f"/panel/assistants/{bobs}/corrections/{correction_id}",
        f"/panel/assistants/{bobs}/corrections/{correction_id}/delete",
    ):
        answer = bob.post(path, {"question": "Mine?", "answer": "Yes."}, page=own_page)
        assert answer.status_code == 404, path
    assert corrections_of(ctx) == [(alice.assistant_id, alice.account_id, UNCOVERED, GIFT_CARDS)]
