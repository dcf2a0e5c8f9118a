"""Settings in Chromium: a new contact email confirmed by the link in its email; a teammate
invited, accepting in a browser of their own and seeing the team without managing it; the
settings page at phone width."""

from __future__ import annotations

import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from chatmeter.accounts import contact_email, team
from chatmeter.accounts.models import User
from chatmeter.context import Context
from chatmeter.notifications.delivery import deliver_due
from chatmeter.notifications.mailers import FileMailer
from chatmeter.notifications.models import OutboxMessage
from tests.e2e.test_panel import PASSWORD, sign_up
from tests.support.browser import Visit
from tests.support.live import LiveServer


def mailed_link(ctx: Context, mail_dir: Path, to: str) -> str:
    """Deliver the outbox to ``.eml`` files, as the file mailer does, and read ``to``'s link."""
    deliver_due(ctx.db, mailer=FileMailer(mail_dir), settings=ctx.settings, now=ctx.clock.now())
    links = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        if message["To"] == to and body is not None:
            pattern = re.escape(ctx.settings.base_url) + r"/panel/[a-z/-]+\?token=[A-Za-z0-9_-]+"
            links += re.findall(pattern, body.get_content())
    assert links, f"no link was mailed to {to}"
    return links[-1]


def open_settings(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/panel/settings")
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()


def test_a_new_contact_email_is_confirmed_by_its_link(
    ctx: Context, live: LiveServer, visit: Visit, tmp_path: Path
) -> None:
    ctx.settings.base_url = live.url  # the links in the emails lead to this server
    page = visit.page
    sign_up(page, live, "owner@northwind.example")
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_test_id("contact-email")).to_have_text("owner@northwind.example")

    page.get_by_label("New contact email").fill("billing@northwind.example")
    page.get_by_role("button", name="Send confirmation link").click()
    expect(page.locator(".alert-ok")).to_contain_text("We sent a confirmation link")
    expect(page.get_by_test_id("pending-email")).to_contain_text(
        "Pending confirmation for billing@northwind.example"
    )
    expect(page.get_by_test_id("contact-email")).to_have_text("owner@northwind.example")

    link = mailed_link(ctx, tmp_path / "mail", "billing@northwind.example")
    page.goto(link)
    page.get_by_role("button", name="Confirm billing@northwind.example").click()
    expect(page).to_have_url(re.compile(r"/panel/settings\?done=email_confirmed"))
    expect(page.get_by_test_id("contact-email")).to_have_text("billing@northwind.example")
    expect(page.get_by_test_id("pending-email")).to_have_count(0)
    assert [m for m in visit.console if m.startswith(("error", "pageerror"))] == []


def test_an_invited_member_joins_and_sees_the_team_but_cannot_manage_it(
    ctx: Context, live: LiveServer, visit: Visit, browser: Browser, tmp_path: Path
) -> None:
    ctx.settings.base_url = live.url
    page = visit.page
    sign_up(page, live, "owner@team.example", name="Team Coffee")
    open_settings(page, live)
    page.get_by_label("Email", exact=True).fill("barista@team.example")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.locator(".alert-ok")).to_contain_text("Invitation sent")
    expect(page.get_by_test_id("invitation")).to_contain_text("barista@team.example")

    link = mailed_link(ctx, tmp_path / "mail", "barista@team.example")
    invitee_browser = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        invitee = invitee_browser.new_page()
        invitee.set_default_timeout(15_000)
        invitee.goto(link)
        expect(invitee.get_by_role("heading", name="Join Team Coffee")).to_be_visible()
        invitee.get_by_label("Password").fill(PASSWORD)
        invitee.get_by_role("button", name="Join the team").click()
        expect(invitee).to_have_url(re.compile(r"/panel/dashboard$"))

        # Signs out and in again with the password chosen on the invitation page.
        invitee.get_by_role("button", name="Sign out").click()
        expect(invitee.get_by_text("You are signed out.")).to_be_visible()
        invitee.get_by_label("Email").fill("barista@team.example")
        invitee.get_by_label("Password").fill(PASSWORD)
        invitee.get_by_role("button", name="Sign in").click()
        expect(invitee).to_have_url(re.compile(r"/panel/dashboard$"))

        open_settings(invitee, live)
        members = invitee.get_by_test_id("member")
        expect(members).to_have_count(2)
        expect(members.filter(has_text="owner@team.example")).to_contain_text("Owner")
        expect(members.filter(has_text="barista@team.example")).to_contain_text("Member")
        expect(
            invitee.get_by_text("Only owners can invite people or change the team.")
        ).to_be_visible()
        for name in ("Send invitation", "Change role", "Withdraw", "Save"):
            expect(invitee.get_by_role("button", name=name)).to_have_count(0)
        expect(invitee.get_by_text("Remove…")).to_have_count(0)
    finally:
        invitee_browser.close()

    page.reload()
    expect(page.get_by_test_id("member")).to_have_count(2)
    expect(page.get_by_test_id("invitation")).to_have_count(0)
    expect(page.get_by_role("button", name="Change role")).to_have_count(1)  # not for the owner


def test_the_settings_page_fits_a_phone(ctx: Context, live: LiveServer, visit: Visit) -> None:
    page = visit.page
    page.set_viewport_size({"width": 390, "height": 844})
    sign_up(page, live, "owner@a-rather-long-domain-name.example", name="Phone Shop")
    fill_the_team(ctx)
    open_settings(page, live)
    expect(page.get_by_test_id("member")).to_have_count(2)
    expect(page.get_by_test_id("invitation")).to_have_count(2)
    expect(page.get_by_test_id("pending-email")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

    page.get_by_text("Remove…").click()  # the confirmation opens in place
    expect(page.get_by_role("button", name=re.compile("^Remove a.very.long"))).to_be_visible()
    page.get_by_label("Email", exact=True).fill("not an email")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390


def fill_the_team(ctx: Context) -> None:
    """A teammate, two pending invitations and a pending contact email, all with long
    addresses: what could push the page wider than a phone."""
    with ctx.db.read() as session:
        owner = session.query(User).one()
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        for email, role in [
            ("a.very.long.teammate.address@subsidiary.a-rather-long-domain-name.example", "member"),
            ("second.pending.invitation@another-long-domain.example", "owner"),
            ("third.pending.invitation@another-long-domain.example", "member"),
        ]:
            team.invite(
                uow.session,
                account_id=owner.account_id,
                invited_by=owner.email,
                email=email,
                role=role,
                now=now,
            )
        contact_email.request_change(
            uow.session,
            account_id=owner.account_id,
            email="accounts-payable@a-rather-long-domain-name.example",
            requested_by=owner.email,
            now=now,
        )
        uow.commit()
    (first, *_) = emails_of(ctx, "team_invitation")
    with ctx.db.uow() as uow:
        team.accept(uow.session, token=first, password=PASSWORD, now=now)
        uow.commit()


def emails_of(ctx: Context, kind: str) -> list[str]:
    """The tokens of the queued emails of ``kind``, oldest first."""
    with ctx.db.read() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        )
        return [json.loads(row.context)["token"] for row in rows]
