"""Visitors rate answers through the public API, on SQLite and PostgreSQL: one vote per
answer, only their own answers (anything else the same 404), bad votes refused, the
visitor's rate limited, other websites refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.answers.support import UNCOVERED, ask, ratings_of
from tests.chat.shop import QUESTION, open_shop
from tests.support.context import derived

pytestmark = pytest.mark.model  # the answers are real chat turns


def rating_url(public_key: str, message_id: int | str) -> str:
    return f"/api/v1/public/{public_key}/messages/{message_id}/rating"


def test_one_vote_per_answer_a_second_vote_changes_it(ctx: Context, visitor: TestClient) -> None:
    shop = open_shop(ctx, tokens=20_000)
    answer = ask(visitor, shop, QUESTION)
    other = ask(visitor, shop, UNCOVERED, answer["conversation_id"])
    vote = {"conversation_id": answer["conversation_id"], "rating": "up"}

    first = visitor.post(rating_url(shop.public_key, answer["message_id"]), json=vote)
    assert first.status_code == 200, first.text
    assert first.json() == {"message_id": answer["message_id"], "rating": "up"}
    assert ratings_of(ctx) == [(answer["message_id"], 1), (other["message_id"], None)]

    second = visitor.post(
        rating_url(shop.public_key, answer["message_id"]), json=vote | {"rating": "down"}
    )
    assert second.status_code == 200
    assert ratings_of(ctx) == [(answer["message_id"], -1), (other["message_id"], None)]
    listed = shop.owner(visitor).get(f"/api/v1/assistants/{shop.assistant_id}/questions")
    (rated,) = listed.json()["poorly_rated"]
    assert (rated["question"], rated["message_id"]) == (QUESTION, answer["message_id"])


def test_only_an_answer_of_the_visitors_own_conversation_can_be_rated(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, tokens=20_000)
    elsewhere = open_shop(ctx, email="other@example.com", tokens=20_000)
    mine = ask(visitor, shop, QUESTION)
    theirs = ask(visitor, shop, QUESTION)  # another conversation of the same assistant
    foreign = ask(visitor, elsewhere, QUESTION)
    conversation = mine["conversation_id"]
    question_id = mine["message_id"] - 1  # the visitor's own message, not an answer
    attempts = [
        (shop.public_key, theirs["message_id"], conversation),
        (shop.public_key, mine["message_id"], theirs["conversation_id"]),
        (shop.public_key, mine["message_id"], foreign["conversation_id"]),
        (elsewhere.public_key, mine["message_id"], conversation),
        (elsewhere.public_key, foreign["message_id"], conversation),
        (shop.public_key, foreign["message_id"], conversation),
        (shop.public_key, question_id, conversation),
        (shop.public_key, 999_999, conversation),
        (shop.public_key, mine["message_id"], "cv_nothing"),
        ("pk_nothing", mine["message_id"], conversation),
        ("not-a-key", mine["message_id"], conversation),
    ]
    bodies = set()
    for key, message_id, conversation_id in attempts:
        answer = visitor.post(
            rating_url(key, message_id), json={"conversation_id": conversation_id, "rating": "up"}
        )
        assert answer.status_code == 404, (key, message_id, conversation_id, answer.text)
        bodies.add(answer.text)
    assert len(bodies) == 1
    assert all(rating is None for _, rating in ratings_of(ctx))


@pytest.mark.parametrize(
    "body",
    [
        {"rating": "up"},
        {"conversation_id": "cv_x"},
        {"conversation_id": "cv_x", "rating": "sideways"},
        {"conversation_id": "cv_x", "rating": 1},
        {"conversation_id": "cv_x", "rating": None},
        {"conversation_id": "", "rating": "up"},
        {"conversation_id": "c" * 41, "rating": "up"},
        {"conversation_id": "cv\x00", "rating": "up"},
        {"conversation_id": "cv_x", "rating": "up", "extra": True},
        ["up"],
    ],
)
def test_a_bad_vote_is_refused_and_changes_nothing(
    ctx: Context, visitor: TestClient, body: object
) -> None:
    shop = open_shop(ctx, tokens=20_000)
    answer = ask(visitor, shop, QUESTION)
    if isinstance(body, dict) and body.get("conversation_id") == "cv_x":
        body["conversation_id"] = answer["conversation_id"]

    refused = visitor.post(rating_url(shop.public_key, answer["message_id"]), json=body)

    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_input"
    assert ratings_of(ctx) == [(answer["message_id"], None)]
    for bad_id in ("0", "x", str(2**63)):
        bad = visitor.post(rating_url(shop.public_key, bad_id), json=body)
        assert bad.status_code == 422


def test_a_visitors_votes_are_rate_limited(ctx: Context) -> None:
    limited = derived(ctx, chat_visitor_rate="3/minute")
    with TestClient(create_app(limited)) as visitor:
        shop = open_shop(limited, tokens=20_000)
        answer = ask(visitor, shop, QUESTION)
        url = rating_url(shop.public_key, answer["message_id"])
        vote = {"conversation_id": answer["conversation_id"], "rating": "up"}
        # Messages and votes are counted apart: one message sent, three votes allowed.
        assert [visitor.post(url, json=vote).status_code for _ in range(3)] == [200] * 3
        refused = visitor.post(url, json=vote | {"rating": "down"})
        guessing = visitor.post(rating_url(shop.public_key, 999_999), json=vote)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert guessing.status_code == 429  # guessing at answers costs the same
    assert ratings_of(ctx) == [(answer["message_id"], 1)]


def test_only_the_assistants_websites_may_vote(ctx: Context, visitor: TestClient) -> None:
    shop = open_shop(ctx, tokens=20_000, allowed_domains=["shop.example"])
    answer = ask(visitor, shop, QUESTION)
    url = rating_url(shop.public_key, answer["message_id"])
    vote = {"conversation_id": answer["conversation_id"], "rating": "up"}

    elsewhere = visitor.post(url, json=vote, headers={"Origin": "https://evil.example"})
    allowed = visitor.post(url, json=vote, headers={"Origin": "https://shop.example"})
    preflight = visitor.options(
        url,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert elsewhere.status_code == 403
    assert elsewhere.json()["error"]["code"] == "forbidden"
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert preflight.status_code == 204
    assert ratings_of(ctx) == [(answer["message_id"], 1)]


def test_a_vote_body_past_the_size_limit_is_refused(ctx: Context, visitor: TestClient) -> None:
    shop = open_shop(ctx, train=False)
    huge = {"conversation_id": "cv_" + "x" * ctx.settings.max_body_bytes, "rating": "up"}
    refused = visitor.post(rating_url(shop.public_key, 1), json=huge)
    assert refused.status_code == 413
