"""No crowd can take the product down (issue #8, finding 1).

Reproduced on the old code: with the bundled model busy, 60 visitors streaming
at once took every one of the web server's 40 worker threads while they waited
for the model; the balance API and the sign-in page stopped answering, and
stayed so after the visitors left. These tests hold the real model, send more
streaming visitors than the server has threads, and require that everything
else answers, that the surplus hears a quick "busy", and that all recovers.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from chatmeter.chat import streaming
from chatmeter.chat.admission import start_turn
from chatmeter.context import Context
from chatmeter.ledger.models import HoldStatus
from chatmeter.web.app import create_app
from tests.chat.shop import QUESTION, answers, holds, open_shop
from tests.security.crowd import Visit, model_held
from tests.support import aio
from tests.support.context import derived
from tests.support.ledger import assert_ledger_settled
from tests.support.live import LiveServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.model]

CROWD = 60  # more than the 40 threads the web server runs routes in
WAIT = 120  # seconds: generous, only so that a hang fails instead of blocking the suite
PLACES = 16


def crowded(ctx: Context) -> Context:
    # Every visitor comes from 127.0.0.1: lift the per-visitor limit, keep the queue's.
    return derived(
        ctx,
        chat_visitor_rate="10000/minute",
        chat_assistant_rate="10000/minute",
        chat_queue_size=PLACES,
    )


def test_a_crowd_waiting_for_the_model_cannot_hang_the_rest(ctx: Context) -> None:
    busy = crowded(ctx)
    shop = open_shop(busy, tokens=1_000_000)
    neighbour = open_shop(busy, email="neighbour@example.com", tokens=100_000)
    per_account = busy.settings.queue_places_per_account
    with LiveServer(create_app(busy)) as server:
        with model_held(busy):
            crowd = [Visit(server.url + shop.chat_url).start() for _ in range(CROWD)]
            for visit in crowd:
                assert visit.answered.wait(WAIT), "a visitor got no answer at all: the server hung"
            # The rest of the product still answers while the crowd waits.
            with httpx.Client(base_url=server.url, timeout=30) as probe:
                balance = probe.get(
                    "/api/v1/balance", headers={"Authorization": f"Bearer {shop.api_key}"}
                )
                assert balance.status_code == 200
                assert probe.get("/panel/sign-in").status_code == 200
            # Another customer's visitors find their own places in the queue.
            other = Visit(server.url + neighbour.chat_url).start()
            assert other.answered.wait(WAIT) and other.status == 200

            admitted = [v for v in crowd if v.status == 200]
            refused = [v for v in crowd if v.status != 200]
            # One generating (holding its slot) and the account's share of waiting places.
            assert len(admitted) == 1 + per_account
            for visit in refused:
                assert visit.status == 503
                assert 1 <= int(visit.headers["retry-after"]) <= 60
                assert '"code": "busy"' in visit.text or '"code":"busy"' in visit.text
        # The model is free again: every admitted turn is answered in full.
        for visit in [*admitted, other]:
            assert visit.ended.wait(WAIT * 2), "an admitted turn never finished"
            assert visit.error is None and visit.events[0] == "start"
            assert visit.events[-1] == "done" and "delta" in visit.events
        with httpx.Client(base_url=server.url, timeout=30) as probe:
            assert probe.get("/panel/sign-in").status_code == 200
    assert len(answers(busy)) == len(admitted) + 1
    # The refused were refused before anything was reserved.
    assert len(holds(busy, shop.account_id)) == len(admitted)
    assert_ledger_settled(busy)


def test_a_visitor_who_leaves_while_waiting_frees_the_place(ctx: Context) -> None:
    busy = crowded(ctx)
    shop = open_shop(busy, tokens=1_000_000)
    per_account = busy.settings.queue_places_per_account
    app = create_app(busy)
    with LiveServer(app) as server:
        with model_held(busy):
            first = Visit(server.url + shop.chat_url).start()  # takes the slot, then the model
            assert first.answered.wait(WAIT) and first.status == 200
            waiting = [Visit(server.url + shop.chat_url).start() for _ in range(per_account)]
            assert all(v.answered.wait(WAIT) and v.status == 200 for v in waiting)
            turned_away = Visit(server.url + shop.chat_url).start()
            assert turned_away.answered.wait(WAIT) and turned_away.status == 503

            queue = next(iter(busy._queues.values()))
            wait_for(lambda: queue.figures().waiting == per_account, "the visitors to queue", WAIT)
            leaving = waiting[:3]
            for visit in leaving:
                visit.leave()
            wait_for(
                lambda: queue.figures().waiting == per_account - 3,
                "the leavers' places to free",
                WAIT,
            )
            newcomers = [Visit(server.url + shop.chat_url).start() for _ in range(3)]
            assert all(v.answered.wait(WAIT) and v.status == 200 for v in newcomers)
        stayed = [first, *waiting[3:], *newcomers]
        for visit in stayed:
            assert visit.ended.wait(WAIT * 2) and visit.events[-1] == "done"
    # The leavers' holds went back in full and left no empty conversation behind.
    finished = holds(busy, shop.account_id)
    assert [h.status for h in finished].count(HoldStatus.SETTLED) == len(stayed)
    assert [h.status for h in finished].count(HoldStatus.RELEASED) == len(leaving)
    assert len(answers(busy)) == len(stayed)
    assert_ledger_settled(busy)


def test_the_model_never_waits_for_the_visitor_to_read(ctx: Context) -> None:
    """The answer is generated and settled while the visitor has read nothing of it: the
    model is never held while the answer is written to a (slow or stalled) visitor."""
    busy = crowded(ctx)
    shop = open_shop(busy, tokens=100_000)

    async def read_only_the_start() -> None:
        turn = start_turn(
            busy,
            public_key=shop.public_key,
            message=QUESTION,
            conversation_id=None,
            visitor="198.51.100.7",
            queue=True,
        )
        events = streaming.events(turn)
        assert (await anext(events))["type"] == "start"
        assert (await anext(events))["type"] == "delta"  # the model is running
        # From here the visitor reads nothing more; the model must finish regardless.
        deadline = time.monotonic() + WAIT
        while not any(h.status == HoldStatus.SETTLED for h in holds(busy, shop.account_id)):
            assert time.monotonic() < deadline, "the generation waited for the reader"
            await asyncio.sleep(0.05)
        rest = [event async for event in events]
        assert rest[-1]["type"] == "done"

    aio.run(read_only_the_start())
    assert len(answers(busy)) == 1
    assert_ledger_settled(busy)
