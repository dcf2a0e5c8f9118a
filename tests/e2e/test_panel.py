"""Journey 2 in the control panel: sign up, "Get more tokens", 2 packages, and the balance
on the dashboard rises by exactly 10,000 without a reload; the out-of-tokens banner; bad
package input in the window (journey 6); the panel at phone width."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from chatmeter.accounts.models import User
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import periods, purchases
from chatmeter.billing.models import Invoice
from chatmeter.billing.summary import balance_summary
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from chatmeter.notifications.models import OutboxMessage
from chatmeter.training import service as training
from tests.support.accounts import add_tokens, spend
from tests.support.browser import Screenshots, Visit
from tests.support.live import LiveServer

PASSWORD = "a long enough password"
OUT_OF_TOKENS = "Your assistants are hidden from your visitors until you get more tokens"


def sign_up(page: Page, live: LiveServer, email: str, name: str = "Northwind Coffee") -> None:
    page.goto(f"{live.url}/panel/sign-up")
    page.get_by_label("Business name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/panel/dashboard$"))
    expect(page.get_by_test_id("verify-email")).to_be_visible()
    confirm_email(page, live, email)


def confirm_email(page: Page, live: LiveServer, email: str) -> None:
    """Open the verification link emailed at sign-up and press its button."""
    ctx: Context = live.app.state.ctx
    with ctx.db.read() as session:
        message = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "verify_email", OutboxMessage.to_address == email)
            .order_by(OutboxMessage.id.desc())
        ).first()
    assert message is not None
    token = json.loads(message.context)["token"]
    if token == "(sent)":  # the in-process worker delivered it: read the file it wrote
        links = []
        for path in sorted(ctx.settings.mail_path.glob("*.eml")):
            links += re.findall(r"/panel/verify-email\?token=([A-Za-z0-9_-]+)", path.read_text())
        token = links[-1]
    page.goto(f"{live.url}/panel/verify-email?token={token}")
    page.get_by_role("button", name=f"Confirm {email}").click()
    expect(page).to_have_url(re.compile(r"/panel/dashboard\?done=verified$"))
    page.goto(f"{live.url}/panel/dashboard")
    expect(page.get_by_test_id("verify-email")).to_have_count(0)


def account_of(ctx: Context, email: str) -> int:
    with ctx.db.read() as session:
        account_id = session.scalar(select(User.account_id).where(User.email == email))
    assert account_id is not None
    return account_id


def balance(ctx: Context, account_id: int) -> int:
    with ctx.db.read() as session:
        return balance_summary(session, account_id=account_id, now=ctx.clock.now()).balance


def shown_balance(page: Page) -> int:
    return int(page.get_by_test_id("balance").inner_text().replace(",", ""))


def invoices(ctx: Context, account_id: int) -> int:
    with ctx.db.read() as session:
        return int(
            session.scalar(select(func.count(Invoice.id)).where(Invoice.account_id == account_id))
            or 0
        )


def test_journey_2_two_packages_raise_the_balance_by_10000_without_a_reload(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, "owner@northwind.example")
    account_id = account_of(ctx, "owner@northwind.example")
    before = shown_balance(page)
    assert before == balance(ctx, account_id) == 0
    page.evaluate("() => { window.__sameDocument = true; }")
    # At desktop width one "Get more tokens" in the navigation; the phone's top-bar one hides.
    expect(
        page.locator(".sidebar-top").get_by_role("button", name="Get more tokens")
    ).to_be_hidden()

    page.locator(".tokens-box").get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    expect(window).to_be_visible()
    expect(window).to_contain_text("Tokens are sold in packages of 5,000")
    expect(window).to_contain_text("Billed monthly")
    expect(window).to_contain_text("renews on the 1st")
    expect(window).to_contain_text("Cancel any time")
    window.get_by_label("How many packages?").fill("10")
    expect(window.locator('[data-quote="tokens"]')).to_have_text("50,000")
    expect(window.locator('[data-quote="price"]')).to_have_text("€90.00")
    window.get_by_label("How many packages?").fill("2")
    expect(window.locator('[data-quote="tokens"]')).to_have_text("10,000")
    expect(window.locator('[data-quote="price"]')).to_have_text("€18.00")
    window.get_by_role("button", name=re.compile("Confirm and pay")).click()
    expect(window.get_by_role("status")).to_contain_text("10,000 tokens added")
    window.get_by_role("button", name="Done").click()
    expect(window).to_be_hidden()

    expect(page.get_by_test_id("balance")).to_have_text(f"{before + 10_000:,}")
    assert shown_balance(page) - before == 10_000
    assert balance(ctx, account_id) == before + 10_000
    assert page.evaluate("() => window.__sameDocument") is True  # no reload happened
    expect(page.get_by_text(OUT_OF_TOKENS)).to_be_hidden()
    assert invoices(ctx, account_id) == 1
    assert [m for m in visit.console if m.startswith(("error", "pageerror"))] == []


def test_the_out_of_tokens_banner_leads_to_more_tokens(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, "empty@northwind.example")
    account_id = account_of(ctx, "empty@northwind.example")
    with ctx.db.uow() as uow:
        assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(name="Front desk"),
            now=ctx.clock.now(),
        )
        uow.commit()
    # Out of tokens, not merely without any yet (a new account sees no alarm).
    add_tokens(ctx, account_id, 1_000)
    spend(ctx, account_id, 1_000, key="turn:all-of-it")
    page.reload()
    status = page.locator("[data-assistant-status]")
    expect(status).to_have_text("Hidden: out of tokens")
    banner = page.get_by_role("alert").filter(has_text=OUT_OF_TOKENS)
    expect(banner).to_be_visible()
    banner.get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    window.get_by_role("button", name=re.compile("Confirm and pay")).click()
    expect(window.get_by_role("status")).to_contain_text("5,000 tokens added")
    window.get_by_role("button", name="Done").click()
    expect(banner).to_be_hidden()
    expect(page.get_by_test_id("balance")).to_have_text("5,000")
    expect(status).to_have_text("No files")  # no reload: the assistant is visible again


def test_bad_package_input_shows_a_message_and_buys_nothing(
    ctx: Context, live: LiveServer, visit: Visit
) -> None:
    page = visit.page
    sign_up(page, live, "careful@northwind.example")
    account_id = account_of(ctx, "careful@northwind.example")
    page.locator(".tokens-box").get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    field = window.get_by_label("How many packages?")
    confirm = window.get_by_role("button", name=re.compile("Confirm and pay"))
    for bad in ["0", "-3", "1001", "ten", "", "2.5"]:
        field.fill(bad)
        expect(window.get_by_role("alert")).to_have_text(
            "Enter a whole number of packages from 1 to 1,000."
        )
        expect(window.locator('[data-quote="tokens"]')).to_have_text("—")
        confirm.click()
        expect(window.get_by_role("alert")).to_be_visible()
    assert invoices(ctx, account_id) == 0
    assert balance(ctx, account_id) == 0
    expect(page.get_by_test_id("balance")).to_have_text("0")


def test_at_phone_width_the_navigation_collapses(
    ctx: Context, live: LiveServer, visit: Visit, screenshots: Screenshots
) -> None:
    page = visit.page
    page.set_viewport_size({"width": 390, "height": 844})
    sign_up(page, live, "phone@northwind.example")
    nav_link = page.get_by_role("link", name="Billing")
    expect(nav_link).to_be_hidden()
    menu = page.get_by_role("button", name="Menu")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav_link).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    menu.click()  # closed again: the top bar keeps the button within reach
    expect(nav_link).to_be_hidden()
    page.locator(".sidebar-top").get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    expect(window).to_be_visible()
    window.get_by_label("How many packages?").fill("2")
    expect(window.locator('[data-quote="tokens"]')).to_have_text("10,000")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    screenshots.take(page, "get-more-tokens-phone.png")


def test_screenshots_of_the_dashboard_and_the_window(
    ctx: Context, live: LiveServer, visit: Visit, screenshots: Screenshots
) -> None:
    page = visit.page
    sign_up(page, live, "hello@northwind.example")
    account_id = account_of(ctx, "hello@northwind.example")
    purchases.purchase(ctx, account_id=account_id, packages=4, key="screenshot:first")
    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        for name, title in (("Help Center", "Northwind Help"), ("Wholesale", "Trade orders")):
            bot = assistants.create_assistant(
                uow.session,
                account_id=account_id,
                now=now,
                fields=AssistantFields(name=name, widget_title=title),
            )
            training.upload(
                uow.session,
                assistant=bot,
                filename=f"{name.lower().replace(' ', '-')}.md",
                data=f"# {title}\n\nWe roast coffee in Leeds and ship it the same day.\n".encode(),
                max_bytes=ctx.settings.max_upload_bytes,
                now=now,
            )
        hold = ledger.reserve(
            uow.session, account_id=account_id, tokens=7_000, key="shot:1", ttl_seconds=60, now=now
        )
        ledger.settle(
            uow.session,
            account_id=account_id,
            hold_id=hold.id,
            context=4_180,
            generation=2_460,
            now=now,
        )
        uow.commit()
    training.process_queue(ctx)
    assert periods.period_of(ctx.clock.now(), "UTC") == "2026-11"
    page.reload()
    expect(page.locator("[data-assistant-status]")).to_have_text(["Ready", "Ready"])
    expect(page.get_by_test_id("balance")).to_have_text(f"{balance(ctx, account_id):,}")
    expect(page.get_by_test_id("used")).to_have_text("6,640")
    screenshots.take(page, "dashboard.png")

    page.locator(".tokens-box").get_by_role("button", name="Get more tokens").click()
    window = page.get_by_role("dialog", name="Get more tokens")
    window.get_by_label("How many packages?").fill("10")
    expect(window.locator('[data-quote="tokens"]')).to_have_text("50,000")
    screenshots.take(page, "get-more-tokens.png")


def test_the_buy_link_in_the_emails_opens_the_window(live: LiveServer, visit: Visit) -> None:
    """Low-balance and out-of-tokens emails link to /panel/billing?buy=1."""
    page = visit.page
    sign_up(page, live, "link@northwind.example")
    page.goto(f"{live.url}/panel/billing?buy=1")
    expect(page.get_by_role("dialog", name="Get more tokens")).to_be_visible()
    page.goto(f"{live.url}/panel/billing")
    expect(page.get_by_role("dialog", name="Get more tokens")).to_be_hidden()
