"""Every generated token is paid for (issue #8, finding 3).

Reproduced on the old code: a customer streamed a chat from his own assistant,
read the turn's hold from ``GET /api/v1/ledger`` and released it through the
API; the whole answer still streamed and nothing was charged. Without any API
key the same happened whenever a turn outlived the hold's time to live and the
expiry job released it.
"""

from __future__ import annotations

import httpx
import pytest

from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.jobs import registry
from chatmeter.ledger.models import EntryKind, Hold, HoldOwner, HoldStatus
from chatmeter.web.app import create_app
from tests.chat.shop import answers, available, entries_for_hold, holds, open_shop
from tests.security.crowd import Visit, model_held
from tests.security.test_crowd import WAIT, wait_for
from tests.support.context import derived
from tests.support.ledger import assert_ledger_clean, assert_ledger_settled
from tests.support.live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.model]


def pending_chat_hold(ctx: Context, account_id: int) -> Hold:
    wait_for(
        lambda: any(h.status == HoldStatus.PENDING for h in holds(ctx, account_id)),
        "the turn to reserve",
    )
    (hold,) = [h for h in holds(ctx, account_id) if h.status == HoldStatus.PENDING]
    return hold


def test_a_customer_cannot_release_or_settle_his_own_chat_turns_hold(ctx: Context) -> None:
    shop = open_shop(ctx, tokens=10_000)
    with LiveServer(create_app(ctx)) as server:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {shop.api_key}"}, timeout=30
        )
        with api, model_held(ctx):
            visit = Visit(server.url + shop.chat_url).start()
            assert visit.answered.wait(WAIT) and visit.status == 200
            pending_chat_hold(ctx, shop.account_id)
            # As the attacker does it: the hold id from the ledger, then the API.
            reserve = next(
                e for e in api.get("/api/v1/ledger").json()["entries"] if e["kind"] == "reserve"
            )
            hold_url = f"/api/v1/holds/{reserve['hold_id']}"
            released = api.post(f"{hold_url}/release")
            settled = api.post(f"{hold_url}/settle", json={"context": 0, "generation": 0})
            for refused in (released, settled):
                assert refused.status_code == 409
                assert refused.json()["error"]["code"] == "hold_not_yours"
            shown = api.get(hold_url).json()
            assert (shown["owner"], shown["status"]) == ("chat", "pending")
        assert visit.ended.wait(WAIT) and visit.events[-1] == "done"
    (hold,) = holds(ctx, shop.account_id)
    (answer,) = answers(ctx)
    assert hold.status == HoldStatus.SETTLED and hold.owner == HoldOwner.CHAT
    assert answer.completion_tokens > 0
    assert answer.context_tokens + answer.generation_tokens == hold.consumed > 0
    assert available(ctx, shop.account_id) == 10_000 - hold.consumed
    assert_ledger_settled(ctx)


def test_a_turn_that_outlives_its_holds_time_to_live_keeps_it(ctx: Context) -> None:
    short = derived(ctx, chat_hold_seconds=10)
    assert isinstance(short.clock, FixedClock)
    shop = open_shop(short, tokens=10_000)
    with LiveServer(create_app(short)) as server:
        with model_held(short):
            visit = Visit(server.url + shop.chat_url).start()
            assert visit.answered.wait(WAIT) and visit.status == 200
            hold = pending_chat_hold(short, shop.account_id)
            now = short.clock.advance(minutes=30)  # the turn waits far past its time to live
            assert hold.expires_at < now
            # The turn is alive, so its process keeps the hold alive; the expiry job then
            # finds nothing due.
            wait_for(
                lambda: holds(short, shop.account_id)[0].expires_at > now, "the hold's extension"
            )
            assert registry.expire_holds(short) == {"released": 0}
        assert visit.ended.wait(WAIT) and visit.events[-1] == "done"
    (hold,) = holds(short, shop.account_id)
    assert hold.status == HoldStatus.SETTLED and hold.consumed > 0
    assert available(short, shop.account_id) == 10_000 - hold.consumed
    assert_ledger_settled(short)


def test_a_hold_lost_anyway_is_still_charged_but_never_below_zero(ctx: Context) -> None:
    """A process stalled past the time to live (nothing extended the hold) and the expiry
    job gave the tokens back; meanwhile the customer spent all but 5. The turn still pays,
    as far as the balance goes."""
    short = derived(ctx, chat_hold_seconds=10)
    shop = open_shop(short, tokens=10_000)
    short.hold_keeper.close()  # the stall: this process extends nothing any more
    with LiveServer(create_app(short)) as server:
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {shop.api_key}"}, timeout=30
        )
        with api, model_held(short):
            visit = Visit(server.url + shop.chat_url).start()
            assert visit.answered.wait(WAIT) and visit.status == 200
            hold = pending_chat_hold(short, shop.account_id)
            short.clock.advance(seconds=11)
            assert registry.expire_holds(short) == {"released": 1}
            left = available(short, shop.account_id)
            spent = api.post("/api/v1/holds", json={"tokens": left - 5})
            assert spent.status_code == 201
        assert visit.ended.wait(WAIT) and visit.events[-1] == "done"
    (answer,) = answers(short)
    assert answer.prompt_tokens + answer.completion_tokens > 5
    assert answer.context_tokens + answer.generation_tokens == 5  # all there was
    assert available(short, shop.account_id) == 0
    kinds = [e.kind for e in entries_for_hold(short, hold.id)]
    assert kinds == [EntryKind.RESERVE, EntryKind.HOLD_EXPIRY, EntryKind.SETTLE]
    assert_ledger_clean(short)  # clean, with the customer's own API hold still pending
