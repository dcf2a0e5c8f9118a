"""Visitors cannot drain a customer (issue #8, finding 6).

Reproduced on the old code: anyone with the public key (it is on the customer's
page) could chat up to the assistant's 600 messages a minute with no daily cap
and no limit on a conversation's length, from addresses of their choosing: an
IPv6 visitor took a fresh address of his /64 for every message, and
``X-Forwarded-For`` was believed from any local process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from chatmeter.chat import caps
from chatmeter.chat.admission import start_turn
from chatmeter.chat.turn import Turn
from chatmeter.context import Context
from chatmeter.errors import Unavailable
from chatmeter.ledger.models import HoldStatus
from chatmeter.web.app import create_app
from tests.chat.shop import QUESTION, UNAVAILABLE, holds, open_shop
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled
from tests.support.live import LiveServer


def used_today(ctx: Context, assistant_id: int) -> int:
    with ctx.db.read() as session:
        day = caps.local_day(ctx.clock.now(), "UTC")
        return caps.used_on(session, assistant_id=assistant_id, day=day)


def start(ctx: Context, public_key: str, visitor: str = "203.0.113.9") -> Turn:
    return start_turn(
        ctx, public_key=public_key, message=QUESTION, conversation_id=None, visitor=visitor
    )


@pytest.mark.model
def test_concurrent_turns_never_pass_an_assistants_daily_cap(ctx: Context) -> None:
    """20 turns at once against a cap that holds three reservations: exactly three
    reserve, however the threads interleave, and the others hear "unavailable"."""
    loose = derived(ctx, chat_visitor_rate="1000/minute")
    probe = open_shop(loose, email="probe@example.com", tokens=100_000, train=False)
    sizing = start(loose, probe.public_key)  # what one turn of this kind reserves
    per_turn = sizing.held
    sizing.abandon()
    shop = open_shop(
        loose, tokens=100_000, train=False, daily_token_cap=3 * per_turn + per_turn // 2
    )
    together = threading.Barrier(20)

    def attempt(_: int) -> Turn | None:
        together.wait(timeout=60)
        try:
            return start(loose, shop.public_key)
        except Unavailable:
            return None

    with ThreadPoolExecutor(20) as pool:
        started = [t for t in pool.map(attempt, range(20)) if t is not None]
    assert len(started) == 3
    assert used_today(loose, shop.assistant_id) == 3 * per_turn
    for turn in started:
        turn.abandon()  # never run: the day gets its tokens back with the hold
    assert used_today(loose, shop.assistant_id) == 0
    assert_ledger_settled(loose)


@pytest.mark.model
def test_at_its_daily_cap_an_assistant_is_quietly_away_until_the_next_day(
    ctx: Context,
) -> None:
    loose = derived(ctx, chat_visitor_rate="1000/minute")
    shop = open_shop(loose, tokens=100_000, daily_token_cap=2_000)
    answered = 0
    with TestClient(create_app(loose)) as visitor:
        while (reply := visitor.post(shop.chat_url, json={"message": QUESTION})).status_code == 200:
            answered += 1
            assert answered < 20, "the cap never stopped the assistant"
        assert reply.status_code == 503 and reply.json() == UNAVAILABLE
        assert answered >= 1
        spent = sum(h.consumed for h in holds(loose, shop.account_id))
        # The day counts exactly what was spent; the turn that did not fit reserved nothing.
        assert used_today(loose, shop.assistant_id) == spent <= 2_000
        assert all(h.status == HoldStatus.SETTLED for h in holds(loose, shop.account_id))
        loose.clock.advance(days=1)
        assert visitor.post(shop.chat_url, json={"message": QUESTION}).status_code == 200
    assert_ledger_settled(loose)


def test_the_widget_disappears_when_the_day_is_spent(ctx: Context) -> None:
    shop = open_shop(ctx, tokens=100_000, train=False, daily_token_cap=1_000)
    widget = f"/api/v1/public/{shop.public_key}/widget"
    with TestClient(create_app(ctx)) as visitor:
        assert visitor.get(widget).status_code == 200
        with ctx.db.uow() as uow:  # the day's use reaches the cap
            assistant = _assistant(uow.session, shop.assistant_id)
            caps.take(
                uow.session,
                assistant=assistant,
                day=caps.local_day(ctx.clock.now(), "UTC"),
                tokens=1_000,
            )
            uow.commit()
        gone = visitor.get(widget)
        assert (gone.status_code, gone.content) == (404, b"")
        assert visitor.post(shop.chat_url, json={"message": QUESTION}).json() == UNAVAILABLE
        ctx.clock.advance(days=1)
        assert visitor.get(widget).status_code == 200


@pytest.mark.model
def test_a_conversation_takes_no_more_questions_than_its_cap(ctx: Context) -> None:
    shop = open_shop(ctx, tokens=100_000, turns_per_conversation=2)
    with TestClient(create_app(ctx)) as visitor:
        first = visitor.post(shop.chat_url, json={"message": QUESTION}).json()
        conversation = {"message": QUESTION, "conversation_id": first["conversation_id"]}
        assert visitor.post(shop.chat_url, json=conversation).status_code == 200
        full = visitor.post(shop.chat_url, json=conversation)
        assert full.status_code == 409
        assert full.json()["error"]["code"] == "conversation_full"
        assert "token" not in full.text.lower()
        assert visitor.post(shop.chat_url, json={"message": QUESTION}).status_code == 200
    assert len(holds(ctx, shop.account_id)) == 3  # the refused question reserved nothing
    assert_ledger_settled(ctx)


@pytest.mark.model
@pytest.mark.parametrize(
    ("show", "keys"),
    [
        ("none", None),
        ("names", {"title", "page", "heading", "label"}),
        ("passages", {"title", "page", "heading", "passage", "label"}),
    ],
)
def test_visitors_see_only_the_sources_the_customer_chose(
    ctx: Context, show: str, keys: set[str] | None
) -> None:
    """The old ``done`` event gave anonymous visitors each passage's whole text and the
    file's id. Now: nothing, names, or names and short excerpts; never ids."""
    shop = open_shop(ctx, tokens=100_000, show_sources=show)
    with TestClient(create_app(ctx)) as visitor:
        reply = visitor.post(shop.chat_url, json={"message": QUESTION}).json()
        streamed = visitor.post(
            shop.chat_url, json={"message": QUESTION}, headers={"Accept": "text/event-stream"}
        ).text
    if keys is None:
        assert reply["sources"] == []
    else:
        assert reply["sources"] and all(set(s) == keys for s in reply["sources"])
    assert "file_id" not in streamed and "file_id" not in str(reply)
    if show == "passages":
        assert all(len(s["passage"]) <= 280 for s in reply["sources"])
    assert_ledger_settled(ctx)


@pytest.mark.model
def test_limits_see_the_visitor_behind_a_trusted_proxy_and_only_there(ctx: Context) -> None:
    """Behind a trusted proxy each visitor has their own limit, and IPv6 visitors share
    their /64's; from anyone else the header changes nothing."""
    shop = open_shop(ctx, tokens=100_000, train=False)
    proxied = derived(ctx, chat_visitor_rate="2/minute", trusted_proxies="127.0.0.1")
    visitors = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    one_network = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
    assert _statuses(proxied, shop, visitors) == [200, 200, 200]
    assert _statuses(proxied, shop, one_network) == [200, 200, 429]
    # Not trusted: every request is 127.0.0.1's, whatever the header says.
    direct = derived(ctx, chat_visitor_rate="2/minute")
    assert _statuses(direct, shop, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [
        200,
        200,
        429,
    ]
    assert_ledger_settled(ctx)


def _statuses(context: Context, shop: object, forwarded: list[str]) -> list[int]:
    with LiveServer(create_app(context)) as server, httpx.Client(timeout=120) as client:
        return [
            client.post(
                server.url + shop.chat_url,  # type: ignore[attr-defined]
                json={"message": QUESTION},
                headers={"X-Forwarded-For": address},
            ).status_code
            for address in forwarded
        ]


def _assistant(session: object, assistant_id: int) -> object:
    from chatmeter.assistants.models import Assistant

    return session.get(Assistant, assistant_id)  # type: ignore[attr-defined]
