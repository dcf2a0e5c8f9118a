"""Per-assistant monthly token caps within the shared balance (issue #12, part 4).

An assistant at its cap is quietly away, as at zero tokens, while the account's other
assistants keep answering; concurrent turns never pass the cap; it is back on the 1st
of the account's month or when the owner raises the cap; ``ledger verify`` checks it.
"""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from chatmeter.accounts import service as accounts
from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat import caps
from chatmeter.chat.admission import start_turn
from chatmeter.chat.caps import verify
from chatmeter.chat.models import AssistantDay
from chatmeter.chat.turn import Turn
from chatmeter.context import Context
from chatmeter.errors import Unavailable
from chatmeter.ledger.verify import verify as ledger_verify
from chatmeter.web.app import create_app
from tests.chat.shop import QUESTION, UNAVAILABLE, open_shop
from tests.support.accounts import add_tokens, new_account
from tests.support.context import derived
from tests.support.ledger import assert_ledger_clean, assert_ledger_settled

ZONE = "America/New_York"  # the account's month starts 5 hours after UTC's


class Account:
    """An account with two assistants sharing its balance, and its owner's API client."""

    def __init__(self, ctx: Context, *, monthly_token_cap: int, tokens: int = 100_000) -> None:
        self.ctx = ctx
        self.id = new_account(ctx, email="owner@example.com", timezone=ZONE)
        now = ctx.clock.now()
        with ctx.db.uow() as uow:
            self.api_key = accounts.issue_api_key(uow.session, account_id=self.id, now=now)
            capped, other = (
                assistants.create_assistant(
                    uow.session,
                    account_id=self.id,
                    fields=AssistantFields(
                        name=name,
                        max_tokens=16,
                        temperature=0,
                        answer_mode="generated",
                        daily_token_cap=0,
                        monthly_token_cap=cap,
                    ),
                    now=now,
                    catalog=ctx.models,
                )
                for name, cap in (("Capped", monthly_token_cap), ("Other", 0))
            )
            self.capped, self.capped_key = capped.id, capped.public_key
            self.other_key = other.public_key
            uow.commit()
        add_tokens(ctx, self.id, tokens, key="monthly-caps")

    def owner(self, visitor: TestClient) -> TestClient:
        return TestClient(visitor.app, headers={"Authorization": f"Bearer {self.api_key}"})

    def today(self) -> dt.date:
        return caps.local_day(self.ctx.clock.now(), ZONE)

    def use(self, tokens: int, day: dt.date | None = None) -> None:
        """Count ``tokens`` towards the capped assistant's month, as a reservation does."""
        with self.ctx.db.uow() as uow:
            assistant = uow.session.get(Assistant, self.capped)
            assert assistant is not None
            caps.take(uow.session, assistant=assistant, day=day or self.today(), tokens=tokens)
            uow.commit()

    def used(self) -> int:
        with self.ctx.db.read() as session:
            return caps.used_in_month(session, assistant_id=self.capped, day=self.today())


def widget(public_key: str) -> str:
    return f"/api/v1/public/{public_key}/widget"


def chat(public_key: str) -> str:
    return f"/api/v1/public/{public_key}/chat"


def start(ctx: Context, public_key: str) -> Turn:
    return start_turn(
        ctx, public_key=public_key, message=QUESTION, conversation_id=None, visitor="203.0.113.9"
    )


def problems(ctx: Context) -> list[str]:
    with ctx.db.read() as session:
        return [p for r in verify(session, now=ctx.clock.now()) for p in r.problems]


@pytest.mark.model
def test_concurrent_turns_never_pass_an_assistants_monthly_cap(ctx: Context) -> None:
    """20 turns at once against a month with room for three more reservations: exactly
    three reserve, the others hear "unavailable", and the account's other assistant
    keeps answering."""
    loose = derived(ctx, chat_visitor_rate="1000/minute")
    probe = open_shop(loose, email="probe@example.com", tokens=100_000, train=False)
    sizing = start(loose, probe.public_key)  # what one turn of this kind reserves
    per_turn = sizing.held
    sizing.abandon()
    earlier = 2 * per_turn  # spent on an earlier day of the month: the month counts it
    account = Account(loose, monthly_token_cap=earlier + 3 * per_turn + per_turn // 2)
    account.use(earlier, day=account.today() - dt.timedelta(days=3))
    together = threading.Barrier(20)

    def attempt(_: int) -> Turn | None:
        together.wait(timeout=60)
        try:
            return start(loose, account.capped_key)
        except Unavailable:
            return None

    with ThreadPoolExecutor(20) as pool:
        started = [t for t in pool.map(attempt, range(20)) if t is not None]
    assert len(started) == 3
    assert account.used() == earlier + 3 * per_turn
    with pytest.raises(Unavailable):
        start(loose, account.capped_key)
    other = start(loose, account.other_key)  # the shared balance still serves the others
    assert_ledger_clean(loose)  # verify's monthly check included: the cap held
    for turn in [*started, other]:
        turn.abandon()  # never run: the month gets its tokens back with the hold
    assert account.used() == earlier
    assert_ledger_settled(loose)


def test_at_its_monthly_cap_an_assistant_is_away_until_the_1st_of_the_accounts_month(
    ctx: Context,
) -> None:
    # 30 November, 23:30 in New York: still November there, already December in UTC.
    ctx.clock.set(dt.datetime(2026, 12, 1, 4, 30, tzinfo=dt.UTC))
    account = Account(ctx, monthly_token_cap=1_000)
    with TestClient(create_app(ctx)) as visitor:
        assert visitor.get(widget(account.capped_key)).status_code == 200
        account.use(600, day=dt.date(2026, 11, 2))
        account.use(400)
        gone = visitor.get(widget(account.capped_key))
        assert (gone.status_code, gone.content) == (404, b"")
        refused = visitor.post(chat(account.capped_key), json={"message": QUESTION})
        assert (refused.status_code, refused.json()) == (503, UNAVAILABLE)
        assert visitor.get(widget(account.other_key)).status_code == 200
        assert account.owner(visitor).get(f"/api/v1/assistants/{account.capped}").status_code == 200
        ctx.clock.advance(minutes=29)  # 23:59 in New York
        assert visitor.get(widget(account.capped_key)).status_code == 404
        ctx.clock.advance(minutes=1)  # the 1st in New York: a new month
        assert visitor.get(widget(account.capped_key)).status_code == 200
    assert problems(ctx) == []


def test_raising_the_cap_brings_it_back_and_lowering_it_hides_it(ctx: Context) -> None:
    account = Account(ctx, monthly_token_cap=1_000)
    account.use(1_000)
    url = f"/api/v1/assistants/{account.capped}"
    with TestClient(create_app(ctx)) as visitor:
        owner = account.owner(visitor)
        assert visitor.get(widget(account.capped_key)).status_code == 404
        raised = owner.patch(url, json={"monthly_token_cap": 1_500})
        assert raised.status_code == 200 and raised.json()["monthly_token_cap"] == 1_500
        assert visitor.get(widget(account.capped_key)).status_code == 200
        account.use(300)
        # Lowered below what the month used: away at once, and verify does not call the
        # month's 1,300 a broken cap (they were reserved under the higher one).
        assert owner.patch(url, json={"monthly_token_cap": 500}).status_code == 200
        assert visitor.get(widget(account.capped_key)).status_code == 404
        assert problems(ctx) == []
        with pytest.raises(Unavailable):
            account.use(1)
        assert owner.patch(url, json={"monthly_token_cap": 0}).status_code == 200  # no cap
        assert visitor.get(widget(account.capped_key)).status_code == 200
    assert account.used() == 1_300
    assert_ledger_clean(ctx)


def test_verify_reports_a_month_above_its_cap(ctx: Context) -> None:
    """A reservation that slipped past the cap (written here behind the caps' back)."""
    account = Account(ctx, monthly_token_cap=1_000)
    account.use(900)
    assert problems(ctx) == []
    with ctx.db.uow() as uow:
        uow.session.execute(
            update(AssistantDay)
            .where(AssistantDay.assistant_id == account.capped)
            .values(tokens=AssistantDay.tokens + 200)
        )
        uow.commit()
    (problem,) = problems(ctx)
    assert f"assistant {account.capped}: 1100 tokens" in problem
    assert "above the 1000 its monthly cap allows" in problem
    with ctx.db.read() as session:  # the ledger's own checks know nothing of assistants
        assert all(r.ok for r in ledger_verify(session))


def test_the_cap_is_kept_refused_when_bad_and_never_another_accounts(ctx: Context) -> None:
    account = Account(ctx, monthly_token_cap=2_000)
    stranger_id = new_account(ctx, email="stranger@example.com")
    with ctx.db.uow() as uow:
        stranger_key = accounts.issue_api_key(
            uow.session, account_id=stranger_id, now=ctx.clock.now()
        )
        uow.commit()
    url = f"/api/v1/assistants/{account.capped}"
    with TestClient(create_app(ctx)) as visitor:
        owner = account.owner(visitor)
        assert owner.get(url).json()["monthly_token_cap"] == 2_000
        for bad in (-1, "5000", 1_000_000_001, 2.5, True, None):
            refused = owner.patch(url, json={"monthly_token_cap": bad})
            if bad is None:  # null leaves the setting as it is
                assert refused.status_code == 200
                continue
            assert refused.status_code == 422, bad
            assert "monthly token cap" in refused.text
        stranger = TestClient(visitor.app, headers={"Authorization": f"Bearer {stranger_key}"})
        assert stranger.patch(url, json={"monthly_token_cap": 0}).status_code == 404
        assert stranger.get(url).status_code == 404
        assert owner.get(url).json()["monthly_token_cap"] == 2_000
