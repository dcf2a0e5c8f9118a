"""The demo account a fresh install starts with."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from chatmeter.accounts.models import Account
from chatmeter.billing.summary import balance_summary
from chatmeter.chat.models import Message
from chatmeter.context import Context
from chatmeter.demo import ensure_demo


def test_demo_account_is_created_once_with_two_packages(ctx: Context) -> None:
    printed: list[str] = []
    first = ensure_demo(ctx, echo=printed.append)
    second = ensure_demo(ctx, echo=printed.append)
    assert first == second
    key = (ctx.settings.data_dir / "demo-api-key.txt").read_text().strip()
    assert key.startswith("cm_") and any(key in line for line in printed)
    with ctx.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1
        summary = balance_summary(session, account_id=first, now=ctx.clock.now())
    assert (summary.balance, summary.limit, summary.active) == (10_000, 10_000, True)


def test_demo_help_center_learns_the_help_articles(ctx: Context) -> None:
    from chatmeter.assistants import service as assistants
    from chatmeter.demo import HELP_ARTICLES
    from chatmeter.training import service as training

    account = ensure_demo(ctx, echo=lambda _line: None)
    with ctx.db.read() as session:
        (helper,) = assistants.list_assistants(session, account_id=account)
        files = training.list_files(session, assistant=helper)
    assert helper.name == "Help Center"
    assert {f.filename for f in files} == {p.name for p in HELP_ARTICLES.iterdir()}
    assert "buying-tokens.txt" in {f.filename for f in files}


@pytest.mark.model
def test_demo_help_center_cites_the_buying_tokens_article(ctx: Context) -> None:
    from chatmeter.assistants import service as assistants
    from chatmeter.assistants.schemas import AssistantFields
    from chatmeter.chat.admission import start_turn
    from chatmeter.training import service as training

    account = ensure_demo(ctx, echo=lambda _line: None)
    training.process_queue(ctx)
    with ctx.db.uow() as uow:
        (helper,) = assistants.list_assistants(uow.session, account_id=account)
        assistants.update_assistant(
            uow.session,
            account_id=account,
            assistant_id=helper.id,
            fields=AssistantFields(max_tokens=16),
            now=ctx.clock.now(),
        )
        uow.commit()
    answer = start_turn(
        ctx,
        public_key=helper.public_key,
        conversation_id=None,
        visitor="t",
        message="How many tokens are in one package?",
    ).run()
    assert answer["answer"].strip()
    # Visitors read excerpts of the demo's public articles; the passages cited are whole
    # in the customer's own record of the conversation.
    assert all(len(s["passage"]) <= 280 for s in answer["sources"])
    with ctx.db.read() as session:
        stored = session.scalars(select(Message).where(Message.role == "assistant")).one()
    cited = [s for s in json.loads(stored.sources) if s["filename"] == "buying-tokens.txt"]
    assert any("packages of 5,000" in s["passage"] for s in cited), stored.sources


def test_the_demo_can_sign_in_to_the_panel(ctx: Context) -> None:
    from chatmeter.accounts import users
    from chatmeter.demo import DEMO_EMAIL, DEMO_PASSWORD

    printed: list[str] = []
    account = ensure_demo(ctx, echo=printed.append)
    with ctx.db.read() as session:
        user = users.authenticate(session, email=DEMO_EMAIL, password=DEMO_PASSWORD)
    assert user.account_id == account
    assert any(DEMO_PASSWORD in line and "/panel/sign-in" in line for line in printed)
