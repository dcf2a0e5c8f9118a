"""A new account's first run: the welcome checklist ticked from real state, dismissing it,
and alarms (out of tokens, renewal, the subscription's controls) only once there is
something to alarm about or to manage."""

from __future__ import annotations

import re

from sqlalchemy import select

from chatmeter.accounts.models import Account, Role, User
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat.models import Conversation
from chatmeter.context import Context
from chatmeter.panel.assistant_views import TEST_VISITOR
from chatmeter.training.models import FileStatus, TrainingFile
from tests.support.accounts import add_tokens, spend
from tests.support.panel import Panel, new_panel

OUT_OF_TOKENS = "You are out of tokens."
NO_TOKENS = "You have not bought any tokens yet."


def account_of(ctx: Context, email: str = "owner@example.com") -> int:
    with ctx.db.read() as session:
        found = session.scalar(select(User.account_id).where(User.email == email))
    assert found is not None
    return found


def ticks(page: str) -> dict[str, str]:
    """Each checklist step's state as the dashboard draws it."""
    return dict(re.findall(r'data-step-key="(\w+)" data-done="(yes|no)"', page))


def dashboard(panel: Panel) -> str:
    response = panel.client.get("/panel/dashboard")
    assert response.status_code == 200
    return response.text


def new_assistant(ctx: Context, account: int, **fields: object) -> int:
    with ctx.db.uow() as uow:
        bot = assistants.create_assistant(
            uow.session,
            account_id=account,
            fields=AssistantFields(name="Front desk", **fields),  # type: ignore[arg-type]
            now=ctx.clock.now(),
        )
        uow.commit()
        return bot.id


def add_file(ctx: Context, account: int, assistant_id: int, status: FileStatus) -> None:
    with ctx.db.uow() as uow:
        uow.session.add(
            TrainingFile(
                account_id=account,
                assistant_id=assistant_id,
                filename=f"{status}.txt",
                size=10,
                sha256=f"{assistant_id}-{status}".ljust(64, "0"),
                status=status,
                created_at=ctx.clock.now(),
                updated_at=ctx.clock.now(),
            )
        )
        uow.commit()


def add_conversation(ctx: Context, account: int, assistant_id: int, visitor: str) -> None:
    with ctx.db.uow() as uow:
        uow.session.add(
            Conversation(
                account_id=account,
                assistant_id=assistant_id,
                visitor=visitor,
                public_id=f"c_{assistant_id}_{visitor}",
                created_at=ctx.clock.now(),
                updated_at=ctx.clock.now(),
            )
        )
        uow.commit()


# --- the checklist ---------------------------------------------------------------------


def test_a_new_account_is_welcomed_without_alarms(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    page = dashboard(panel)
    assert "Welcome to Chatmeter" in page
    assert ticks(page) == dict.fromkeys(["assistant", "files", "test", "website", "tokens"], "no")
    assert OUT_OF_TOKENS not in page
    assert re.search(r'<div class="grid" data-show-when="had-tokens" hidden>', page)  # no 0% of 0
    assert NO_TOKENS in page and ">Get tokens</button>" in page
    # Nor does the sidebar say "0 tokens of 0 this month", on any page.
    for shown in (page, panel.client.get("/panel/assistants").text):
        assert '<div data-show-when="had-tokens" hidden>' in shown
        assert '<p class="tokens-box-sub" data-show-when="no-tokens-yet">No tokens yet' in shown
    # The empty assistants card offers the way out of it.
    empty = page.split("No assistants yet.")[1].split("</section>")[0]
    assert 'href="/panel/assistants/new"' in empty and "New assistant" in empty


def test_each_step_is_ticked_from_the_accounts_real_state(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_of(ctx)
    bot = new_assistant(ctx, account)
    assert ticks(dashboard(panel))["assistant"] == "yes"
    assert f'href="/panel/assistants/{bot}/training"' in dashboard(panel)

    add_file(ctx, account, bot, FileStatus.PROCESSING)  # not ready yet: no tick
    assert ticks(dashboard(panel))["files"] == "no"
    add_file(ctx, account, bot, FileStatus.READY)
    assert ticks(dashboard(panel))["files"] == "yes"

    add_conversation(ctx, account, bot, visitor="v_someone")  # a visitor's, not the test chat
    assert ticks(dashboard(panel))["test"] == "no"
    add_conversation(ctx, account, bot, visitor=TEST_VISITOR)
    assert ticks(dashboard(panel))["test"] == "yes"

    with ctx.db.uow() as uow:
        assistants.update_assistant(
            uow.session,
            account_id=account,
            assistant_id=bot,
            fields=AssistantFields(allowed_domains=["shop.example.com"]),
            now=ctx.clock.now(),
        )
        uow.commit()
    assert ticks(dashboard(panel))["website"] == "yes"
    assert "Welcome to Chatmeter" in dashboard(panel)

    add_tokens(ctx, account, 5_000)
    page = dashboard(panel)
    assert set(ticks(page).values()) == {"yes"}
    assert "You're live" in page or "You&#39;re live" in page


def test_another_accounts_progress_ticks_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    other = new_panel(ctx)
    other.sign_up("other@example.com")
    theirs = account_of(ctx, "other@example.com")
    bot = new_assistant(ctx, theirs, allowed_domains=["other.example"])
    add_file(ctx, theirs, bot, FileStatus.READY)
    add_conversation(ctx, theirs, bot, visitor=TEST_VISITOR)
    add_tokens(ctx, theirs, 5_000)
    assert set(ticks(dashboard(other)).values()) == {"yes"}
    assert set(ticks(dashboard(panel)).values()) == {"no"}


def test_a_deleted_assistants_progress_no_longer_counts(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_of(ctx)
    bot = new_assistant(ctx, account, allowed_domains=["shop.example.com"])
    add_file(ctx, account, bot, FileStatus.READY)
    add_conversation(ctx, account, bot, visitor=TEST_VISITOR)
    with ctx.db.uow() as uow:
        assistants.delete_assistant(
            uow.session, account_id=account, assistant_id=bot, now=ctx.clock.now()
        )
        uow.commit()
    assert set(ticks(dashboard(panel)).values()) == {"no"}


def test_any_member_can_dismiss_the_checklist_for_the_account(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    with ctx.db.uow() as uow:
        user = uow.session.scalar(select(User))
        assert user is not None
        user.role = Role.MEMBER
        uow.commit()
    response = panel.post("/panel/onboarding/dismiss", {}, page="/panel/dashboard")
    assert (response.status_code, response.headers["location"]) == (303, "/panel/dashboard")
    page = dashboard(panel)
    assert 'data-testid="onboarding"' not in page
    # The figures say plainly what there is: no tokens yet, still no alarm.
    assert NO_TOKENS in page and OUT_OF_TOKENS not in page
    with ctx.db.read() as session:
        account = session.get(Account, account_of(ctx))
        assert account is not None and account.onboarding_dismissed_at == ctx.clock.now()


def test_dismissing_without_the_csrf_token_changes_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    for data in ({}, {"csrf_token": "forged"}):
        response = panel.client.post("/panel/onboarding/dismiss", data=data, follow_redirects=False)
        assert response.status_code == 403
        assert "This form has expired; reload the page and try again." in response.text
        assert 'data-testid="onboarding"' in response.text  # the dashboard, still welcoming
    assert 'data-testid="onboarding"' in dashboard(panel)
    signed_out = new_panel(ctx).client.post(
        "/panel/onboarding/dismiss", data={}, follow_redirects=False
    )
    assert signed_out.status_code in (303, 403)
    assert 'data-testid="onboarding"' in dashboard(panel)


def test_dismissing_hides_the_checklist_of_ones_own_account_only(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    other = new_panel(ctx)
    other.sign_up("other@example.com")
    assert other.post("/panel/onboarding/dismiss", {}, page="/panel/dashboard").status_code == 303
    assert 'data-testid="onboarding"' not in dashboard(other)
    assert 'data-testid="onboarding"' in dashboard(panel)


def test_the_live_state_can_be_closed(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_of(ctx)
    bot = new_assistant(ctx, account, allowed_domains=["shop.example.com"])
    add_file(ctx, account, bot, FileStatus.READY)
    add_conversation(ctx, account, bot, visitor=TEST_VISITOR)
    add_tokens(ctx, account, 5_000)
    assert ">Close</button>" in dashboard(panel)
    panel.post("/panel/onboarding/dismiss", {}, page="/panel/dashboard")
    assert 'data-testid="onboarding"' not in dashboard(panel)


# --- alarms only once there were tokens -------------------------------------------------


def test_before_any_tokens_the_assistants_wait_without_alarm(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    bot = new_assistant(ctx, account_of(ctx))
    listing = panel.client.get("/panel/assistants").text
    assert OUT_OF_TOKENS not in listing
    assert "No tokens bought yet." in listing
    assert f'data-testid="status-{bot}">Hidden: no tokens yet<' in listing
    assert "Hidden: out of tokens" not in dashboard(panel)


def test_once_the_tokens_are_spent_the_alarms_sound(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_of(ctx)
    bot = new_assistant(ctx, account)
    add_tokens(ctx, account, 1_000)
    spend(ctx, account, 1_000, key="turn:all")
    page = dashboard(panel)
    assert OUT_OF_TOKENS in page
    assert 'data-show-when="inactive" role="alert" hidden' not in page
    assert '<div class="grid" data-show-when="had-tokens">' in page and NO_TOKENS not in page
    assert '<div data-show-when="had-tokens">' in page
    assert '<p class="tokens-box-sub" data-show-when="no-tokens-yet" hidden>' in page
    listing = panel.client.get("/panel/assistants").text
    assert OUT_OF_TOKENS in listing and "No tokens bought yet." not in listing
    assert f'data-testid="status-{bot}">Hidden: out of tokens<' in listing


def test_billing_without_a_subscription_offers_packages(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    page = panel.client.get("/panel/billing").text
    assert 'data-testid="no-subscription"' in page
    assert "Tokens come in packages of 5,000, for €9.00 each a month." in page
    for control in ("Cancel subscription", "Packages from", "monthly-price", "€0.00"):
        assert control not in page, control
    invoices = page.split('id="invoices-title"')[1]
    assert "No invoices yet." in invoices and "data-open-tokens" in invoices


def test_billing_with_a_subscription_manages_it(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assert panel.buy(2, key="window-first-run").status_code == 200
    page = panel.client.get("/panel/billing").text
    assert 'data-testid="no-subscription"' not in page
    assert "Cancel subscription…" in page and "Packages from 1 December 2026" in page
    assert re.search(r'data-testid="monthly-price">€18.00<', page)
    # A free grant alone is not a subscription: there is still nothing to cancel.
    other = new_panel(ctx)
    other.sign_up("gift@example.com")
    add_tokens(ctx, account_of(ctx, "gift@example.com"), 1_000)
    gifted = other.client.get("/panel/billing").text
    assert 'data-testid="no-subscription"' in gifted and "Cancel subscription" not in gifted
