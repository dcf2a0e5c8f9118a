"""Turns that are refused: before a token is reserved or the model is asked, and without
telling the visitor anything about the customer's account."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from chatmeter.billing import purchases
from chatmeter.chat import admission
from chatmeter.context import Context
from chatmeter.errors import RateLimited
from chatmeter.web.app import create_app
from tests.chat.shop import (
    QUESTION,
    UNAVAILABLE,
    Recording,
    assert_says_nothing_about_money,
    available,
    entry_ids,
    holds,
    install,
    open_shop,
)
from tests.support.accounts import add_tokens
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

STREAM = {"Accept": "text/event-stream"}


def assert_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.json() == UNAVAILABLE
    assert_says_nothing_about_money(reply.text)


def test_a_depleted_account_is_only_unavailable_until_a_purchase(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    """Out of tokens, or short of one turn's reservation, the visitor hears a generic
    "unavailable" and the model is never called; after a purchase the assistant answers."""
    shop = open_shop(ctx, tokens=0)

    assert_unavailable(visitor.post(shop.chat_url, json={"message": QUESTION}))
    assert_unavailable(visitor.post(shop.chat_url, json={"message": QUESTION}, headers=STREAM))

    add_tokens(ctx, shop.account_id, 20)  # active, but short of prompt + response cap
    before = entry_ids(ctx, shop.account_id)
    assert_unavailable(visitor.post(shop.chat_url, json={"message": QUESTION}))
    assert_unavailable(visitor.post(shop.chat_url, json={"message": QUESTION}, headers=STREAM))
    assert entry_ids(ctx, shop.account_id) == before
    assert holds(ctx, shop.account_id) == []
    assert model.calls == 0

    purchases.purchase(ctx, account_id=shop.account_id, packages=1)
    reply = visitor.post(shop.chat_url, json={"message": QUESTION})

    assert reply.status_code == 200, reply.text
    assert reply.json()["answer"].strip()
    assert model.calls == 1
    assert_ledger_settled(ctx)


def test_unknown_and_deleted_assistants_look_like_a_depleted_one(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    """An unknown public key and a deleted assistant get the same generic 503."""
    shop = open_shop(ctx, tokens=5_000, train=False)
    for key in ("pk_nobodyhasthiskey000000", "not-a-key", "pk_" + "x" * 60):
        assert_unavailable(visitor.post(f"/api/v1/public/{key}/chat", json={"message": "Hi"}))
    assert shop.owner(visitor).delete(f"/api/v1/assistants/{shop.assistant_id}").status_code == 204

    assert_unavailable(visitor.post(shop.chat_url, json={"message": QUESTION}))
    assert_unavailable(visitor.post(shop.chat_url, json={"message": QUESTION}, headers=STREAM))
    assert model.calls == 0
    assert holds(ctx, shop.account_id) == []


@pytest.mark.parametrize(
    "message", ["", "   \n\t ", "x" * 2_001], ids=["empty", "blank", "over-limit"]
)
def test_bad_messages_are_refused_before_anything_is_reserved(
    ctx: Context, visitor: TestClient, model: Recording, message: str
) -> None:
    """An empty message or one past ``chat_max_message_chars`` is a 422; nothing is held."""
    assert ctx.settings.chat_max_message_chars == 2_000
    shop = open_shop(ctx, tokens=5_000, train=False)
    before = entry_ids(ctx, shop.account_id)

    reply = visitor.post(shop.chat_url, json={"message": message})

    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == "invalid_input"
    assert entry_ids(ctx, shop.account_id) == before
    assert model.calls == 0


def test_a_message_at_the_size_limit_is_accepted(ctx: Context, model: Recording) -> None:
    """``chat_max_message_chars`` characters exactly is still a message one can ask."""
    shop = open_shop(ctx, tokens=5_000, train=False)
    message = ("Where is my order number 12345? " * 100)[:2_000]
    assert len(message) == len(message.strip()) == 2_000

    turn = admission.start_turn(
        ctx,
        public_key=shop.public_key,
        message=message,
        conversation_id=None,
        visitor="198.51.100.1",
    )

    assert turn.request.messages[-1].content == message
    turn.abandon()  # it never ran: its hold goes back
    assert model.calls == 0


def test_a_visitor_past_the_rate_limit_is_refused_and_charged_nothing(ctx: Context) -> None:
    """The 4th message within a minute from one visitor (limit 3/minute) is a 429
    ``rate_limited``: nothing reserved, model not called; other visitors still get through."""
    limited = derived(ctx, chat_visitor_rate="3/minute")
    model = install(limited)
    shop = open_shop(limited, tokens=5_000)

    with TestClient(create_app(limited)) as visitor:
        for _ in range(3):
            assert visitor.post(shop.chat_url, json={"message": QUESTION}).status_code == 200
        before = entry_ids(limited, shop.account_id)
        refused = visitor.post(shop.chat_url, json={"message": QUESTION})
        streamed = visitor.post(shop.chat_url, json={"message": QUESTION}, headers=STREAM)

    for reply in (refused, streamed):
        assert reply.status_code == 429
        assert reply.json()["error"]["code"] == "rate_limited"
        assert_says_nothing_about_money(reply.json()["error"]["message"])
    assert entry_ids(limited, shop.account_id) == before
    assert model.calls == 3
    other = admission.start_turn(
        limited,
        public_key=shop.public_key,
        message=QUESTION,
        conversation_id=None,
        visitor="203.0.113.9",
    )
    other.abandon()  # it never ran: its hold goes back
    assert_ledger_settled(limited)


def test_an_assistant_past_its_rate_limit_is_refused_and_charged_nothing(ctx: Context) -> None:
    """The per-assistant limit counts every visitor's messages to that one assistant."""
    limited = derived(ctx, chat_assistant_rate="3/minute")
    model = install(limited)
    shop = open_shop(limited, tokens=5_000, train=False)
    for n in range(3):
        turn = admission.start_turn(
            limited,
            public_key=shop.public_key,
            message=QUESTION,
            conversation_id=None,
            visitor=f"198.51.100.{n}",
        )
        turn.abandon()  # it never ran: its hold goes back
    before = entry_ids(limited, shop.account_id)

    with TestClient(create_app(limited)) as visitor:
        refused = visitor.post(shop.chat_url, json={"message": QUESTION})

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    with pytest.raises(RateLimited):
        admission.start_turn(
            limited,
            public_key=shop.public_key,
            message=QUESTION,
            conversation_id=None,
            visitor="203.0.113.50",
        )
    assert entry_ids(limited, shop.account_id) == before
    assert model.calls == 0
    assert_ledger_settled(limited)


def test_limits_in_redis_hold_across_processes(ctx: Context, redis_db: str) -> None:
    """Two web processes sharing Redis count one visitor's messages together."""
    first, second = (
        derived(ctx, redis_url=redis_db, chat_visitor_rate="3/minute") for _ in range(2)
    )
    models = [install(first), install(second)]
    shop = open_shop(first, tokens=5_000, train=False)
    for process in (first, second, first):
        turn = admission.start_turn(
            process,
            public_key=shop.public_key,
            message=QUESTION,
            conversation_id=None,
            visitor="testclient",
        )
        turn.abandon()  # it never ran: its hold goes back
    before = entry_ids(ctx, shop.account_id)

    with TestClient(create_app(second)) as visitor:
        refused = visitor.post(shop.chat_url, json={"message": QUESTION})

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    with pytest.raises(RateLimited):
        admission.start_turn(
            first,
            public_key=shop.public_key,
            message=QUESTION,
            conversation_id=None,
            visitor="testclient",
        )
    assert entry_ids(ctx, shop.account_id) == before
    assert [m.calls for m in models] == [0, 0]
    assert available(ctx, shop.account_id) == 5_000


def test_accounts_never_see_each_others_conversations(
    ctx: Context, visitor: TestClient, model: Recording
) -> None:
    """Another account's conversation is a 404 and absent from every list, and its public
    id used on another assistant starts a fresh conversation with no history."""
    alice = open_shop(ctx, email="alice@example.com", tokens=5_000)
    bob = open_shop(ctx, email="bob@example.com", tokens=5_000)
    reply = visitor.post(alice.chat_url, json={"message": QUESTION})
    assert reply.status_code == 200
    (conversation,) = alice.owner(visitor).get("/api/v1/conversations").json()

    owner = bob.owner(visitor)
    assert owner.get("/api/v1/conversations").json() == []
    assert (
        owner.get("/api/v1/conversations", params={"assistant_id": alice.assistant_id}).json() == []
    )
    hidden = owner.get(f"/api/v1/conversations/{conversation['id']}")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"
    assert QUESTION not in hidden.text

    turn = admission.start_turn(
        ctx,
        public_key=bob.public_key,
        message=QUESTION,  # answered from bob's own documents: a prompt is built
        conversation_id=reply.json()["conversation_id"],
        visitor="testclient",
    )
    assert turn.conversation_public_id != reply.json()["conversation_id"]
    assert [m.role for m in turn.request.messages] == ["system", "user"]  # no history
    (fresh,) = owner.get("/api/v1/conversations").json()
    assert fresh["id"] != conversation["id"] and fresh["assistant_id"] == bob.assistant_id
    turn.abandon()  # it never ran: its hold goes back, and its empty conversation
    assert owner.get("/api/v1/conversations").json() == []
    assert len(alice.owner(visitor).get("/api/v1/conversations").json()) == 1
