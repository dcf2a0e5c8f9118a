"""The settings page: account name and time zone, the contact email confirmed by a link,
the password change; bad input in every form, CSRF, and what a member may do."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from chatmeter.accounts import team
from chatmeter.accounts.models import Account, EmailLink
from chatmeter.billing import renewals
from chatmeter.billing.models import Subscription
from chatmeter.context import Context
from chatmeter.panel import auth
from tests.notifications.smtp_server import SmtpServer
from tests.panel.test_password_reset import (
    NEW_PASSWORD,
    deliver_over_smtp,
    emails,
    figures,
    link_in,
    link_path,
    signed_in,
    user,
)
from tests.support.panel import PASSWORD, Panel, new_panel

CONFIRM = "/panel/settings/contact-email/confirm"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def account(ctx: Context) -> Account:
    with ctx.db.read() as session:
        found = session.get(Account, user(ctx).account_id)
    assert found is not None
    return found


def save_account(panel: Panel, **fields: Any) -> Any:
    data = {"name": "Northwind", "timezone": "Europe/Berlin"} | fields
    return panel.post("/panel/settings/account", data, page="/panel/settings")


def ask_contact_email(panel: Panel, email: Any) -> Any:
    return panel.post("/panel/settings/contact-email", {"email": email}, page="/panel/settings")


def confirm(panel: Panel, path: str) -> Any:
    token = path.split("token=", 1)[1]
    return panel.post(CONFIRM, {"token": token}, page="/panel/password/forgot")


def change_password(panel: Panel, current: str, new: str) -> Any:
    data = {"current_password": current, "new_password": new}
    return panel.post("/panel/settings/password", data, page="/panel/settings")


def add_member(
    ctx: Context,
    email: str = "member@example.com",
    role: str = "member",
    owner: str = "owner@example.com",
) -> None:
    """A teammate of ``owner`` who accepted an invitation, as the invitation page makes one."""
    account_id = user(ctx, owner).account_id
    with ctx.db.uow() as uow:
        team.invite(
            uow.session,
            account_id=account_id,
            invited_by=owner,
            email=email,
            role=role,
            now=ctx.clock.now(),
        )
        uow.commit()
    token = figures(emails(ctx, "team_invitation")[-1])["token"]
    with ctx.db.uow() as uow:
        team.accept(uow.session, token=token, password=PASSWORD, now=ctx.clock.now())
        uow.commit()


# --- the page ----------------------------------------------------------------------------


def test_the_page_needs_a_sign_in(ctx: Context, panel: Panel) -> None:
    response = panel.client.get("/panel/settings", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/panel/sign-in"
    posted = panel.post(
        "/panel/settings/account", {"name": "X", "timezone": "UTC"}, page="/panel/sign-in"
    )
    assert posted.status_code == 303 and posted.headers["location"] == "/panel/sign-in"


def test_the_owner_sees_every_section(ctx: Context, panel: Panel) -> None:
    panel.sign_up(name="Northwind", timezone="Asia/Tokyo")
    page = panel.client.get("/panel/settings")
    assert page.status_code == 200
    assert "Coming soon" not in page.text
    assert '<link rel="stylesheet" href="/panel/static/settings.css">' in page.text
    assert 'value="Northwind"' in page.text
    assert '<option value="Asia/Tokyo" selected>Asia/Tokyo</option>' in page.text
    assert '<option value="America/New_York">America/New York</option>' in page.text
    assert "your tokens renew at 00:00 on the 1st of each month, local time" in page.text
    assert 'data-testid="contact-email">owner@example.com<' in page.text
    assert 'action="/panel/settings/contact-email"' in page.text
    assert 'action="/panel/settings/password"' in page.text
    assert 'action="/panel/settings/team/invite"' in page.text
    assert 'owner@example.com <span class="muted">(you)</span>' in page.text
    assert panel.client.get("/panel/static/settings.css").status_code == 200


# --- account name and time zone --------------------------------------------------------


def test_saving_the_name_and_time_zone(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    saved = save_account(panel, name="  Northwind Coffee ", timezone="America/Los_Angeles")
    assert saved.status_code == 303
    assert saved.headers["location"] == "/panel/settings?done=account#account"
    assert (account(ctx).name, account(ctx).timezone) == ("Northwind Coffee", "America/Los_Angeles")
    page = panel.client.get(saved.headers["location"])
    assert "Your account settings are saved." in page.text
    assert '<option value="America/Los_Angeles" selected>' in page.text
    assert "Northwind Coffee" in panel.client.get("/panel/dashboard").text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "The name must be 1 to 200 characters."),
        ({"name": "   "}, "The name must be 1 to 200 characters."),
        ({"name": "n" * 201}, "The name is too long (at most 200 characters)."),
        ({"timezone": ""}, "Unknown time zone"),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone &#39;Mars/Olympus&#39;"),
        ({"timezone": "../../etc/passwd"}, "Unknown time zone"),
        ({"timezone": "Z" * 65}, "The timezone is too long (at most 64 characters)."),
    ],
)
def test_bad_account_input_changes_nothing(
    ctx: Context, panel: Panel, fields: dict[str, str], message: str
) -> None:
    panel.sign_up(name="Shop", timezone="UTC")
    response = save_account(panel, **fields)
    assert response.status_code == 422
    assert message in response.text
    assert 'class="alert alert-error"' in response.text
    assert (account(ctx).name, account(ctx).timezone) == ("Shop", "UTC")


def test_a_file_in_a_text_field_is_refused(ctx: Context, panel: Panel) -> None:
    panel.sign_up(name="Shop")
    token = panel.csrf("/panel/settings")
    response = panel.client.post(
        "/panel/settings/account",
        data={"csrf_token": token, "timezone": "UTC"},
        files={"name": ("name.txt", b"Evil", "text/plain")},
    )
    assert response.status_code == 422
    assert "Name must be text." in response.text
    assert account(ctx).name == "Shop"


def test_changing_the_zone_mid_month_never_renews_twice(ctx: Context, panel: Panel) -> None:
    """The panel keeps the API's rules: the renewal follows the zone, once a month."""
    panel.sign_up(timezone="UTC")
    account_id = user(ctx).account_id
    ctx.clock.set(dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC))  # 1 December in Auckland
    assert save_account(panel, timezone="Pacific/Auckland").status_code == 303
    assert renewals.run_renewals(ctx)["accounts"] == 1
    assert save_account(panel, timezone="UTC").status_code == 303  # back to 30 November
    ctx.clock.set(dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC))
    assert renewals.run_renewals(ctx)["accounts"] == 0
    with ctx.db.read() as session:
        subscription = session.get(Subscription, account_id)
        assert subscription is not None and subscription.renewed_period == "2026-12"


# --- the contact email -----------------------------------------------------------------


def test_a_new_contact_email_applies_once_its_link_is_opened(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    asked = ask_contact_email(panel, " billing@Example.COM ")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/panel/settings?done=email_sent#contact-email"
    assert account(ctx).contact_email == "owner@example.com"  # not yet
    (message,) = emails(ctx, "contact_email_confirm")
    assert (message.kind, message.to_address) == ("contact_email_confirm", "billing@example.com")
    page = panel.client.get(asked.headers["location"])
    assert "We sent a confirmation link to the new address." in page.text
    assert "Pending confirmation for <strong>billing@example.com</strong>" in page.text

    path = link_path(message, CONFIRM)
    shown = new_panel(ctx).client.get(path)  # opened on another device, signed out
    assert shown.status_code == 200
    assert "Confirm billing@example.com" in shown.text
    assert account(ctx).contact_email == "owner@example.com"  # opening shows, it does not change

    done = confirm(panel, path)
    assert done.status_code == 303
    assert done.headers["location"] == "/panel/settings?done=email_confirmed#contact-email"
    assert account(ctx).contact_email == "billing@example.com"
    told = sorted(
        (m.to_address, figures(m)["recipient"]) for m in emails(ctx, "contact_email_changed")
    )
    assert told == [("billing@example.com", "new"), ("owner@example.com", "old")]
    page = panel.client.get("/panel/settings")
    assert 'data-testid="contact-email">billing@example.com<' in page.text
    assert "Pending confirmation" not in page.text

    again = panel.client.get(path)
    assert again.status_code == 410
    assert "This confirmation link was already used, or a newer one replaced it." in again.text
    assert confirm(panel, path).status_code == 410


def test_the_confirmation_email_arrives_over_smtp_with_a_working_link(
    ctx: Context, panel: Panel, smtp_server: SmtpServer
) -> None:
    panel.sign_up(name="Northwind")
    assert deliver_over_smtp(ctx, smtp_server).sent == 1  # the sign-up's verification
    smtp_server.inbox.messages.clear()
    ask_contact_email(panel, "billing@example.com")
    assert deliver_over_smtp(ctx, smtp_server).sent == 1
    (received,) = smtp_server.inbox.messages
    assert received["To"] == "billing@example.com"
    assert received["Subject"] == "Confirm your new contact email"
    path = link_in(received, ctx.settings, CONFIRM)
    stranger = new_panel(ctx)  # the new mailbox's owner, not signed in
    assert stranger.client.get(path).status_code == 200
    done = confirm(stranger, path)
    assert done.status_code == 200
    assert "The contact email is now billing@example.com." in done.text
    assert account(ctx).contact_email == "billing@example.com"
    assert deliver_over_smtp(ctx, smtp_server).sent == 2  # the old and the new address are told


def test_the_confirmation_link_expires_after_a_day(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    ask_contact_email(panel, "billing@example.com")
    path = link_path(emails(ctx, "contact_email_confirm")[0], CONFIRM)
    ctx.clock.advance(hours=24)
    expired = confirm(panel, path)
    assert expired.status_code == 410
    assert "This confirmation link has expired (it works for 24 hours)" in expired.text
    assert account(ctx).contact_email == "owner@example.com"
    assert "Pending confirmation" not in panel.client.get("/panel/settings").text


def test_a_newer_request_replaces_the_older_one(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    ask_contact_email(panel, "first@example.com")
    ask_contact_email(panel, "second@example.com")
    first, second = (link_path(m, CONFIRM) for m in emails(ctx, "contact_email_confirm"))
    assert confirm(panel, first).status_code == 410
    assert confirm(panel, second).status_code == 303
    assert account(ctx).contact_email == "second@example.com"


def test_a_pending_change_can_be_cancelled(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    ask_contact_email(panel, "billing@example.com")
    path = link_path(emails(ctx, "contact_email_confirm")[0], CONFIRM)
    cancelled = panel.post("/panel/settings/contact-email/cancel", {}, page="/panel/settings")
    assert cancelled.status_code == 303
    page = panel.client.get(cancelled.headers["location"])
    assert "The contact email change is cancelled." in page.text
    assert "Pending confirmation" not in page.text
    assert confirm(panel, path).status_code == 410
    assert account(ctx).contact_email == "owner@example.com"


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Enter a valid email address."),
        ("not-an-email", "Enter a valid email address"),
        ("a@b", "Enter a valid email address"),
        ("a" * 400 + "@example.com", "The email is too long (at most 320 characters)."),
        ("owner@example.com", "This is already your contact email."),
        ("OWNER@example.com", "This is already your contact email."),
    ],
)
def test_bad_contact_email_input_changes_nothing(
    ctx: Context, panel: Panel, email: str, message: str
) -> None:
    panel.sign_up()
    response = ask_contact_email(panel, email)
    assert response.status_code == 422
    assert message in response.text
    assert 'class="alert alert-error"' in response.text
    assert emails(ctx, "contact_email_confirm") == []
    assert "Pending confirmation" not in response.text
    assert account(ctx).contact_email == "owner@example.com"


@pytest.mark.parametrize("query", ["", "?token=nope", "?token=" + "B" * 43])
def test_a_forged_confirmation_link_gets_a_readable_page(
    ctx: Context, panel: Panel, query: str
) -> None:
    panel.sign_up()
    page = panel.client.get(CONFIRM + query)
    assert page.status_code == 404
    assert "This link is not valid" in page.text


def test_contact_email_changes_are_rate_limited(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    codes = [ask_contact_email(panel, f"new{n}@example.com").status_code for n in range(6)]
    assert codes == [303] * 5 + [429]
    assert len(emails(ctx, "contact_email_confirm")) == 5


# --- the password --------------------------------------------------------------------------


def test_changing_the_password_ends_the_other_sessions(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    laptop = new_panel(ctx)
    laptop.sign_in()
    panel.post("/panel/password/forgot", {"email": "owner@example.com"})
    reset_link = link_path(emails(ctx, "password_reset")[0], "/panel/password/reset")

    changed = change_password(panel, PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 303
    assert auth.SESSION_COOKIE in changed.headers["set-cookie"]
    page = panel.client.get(changed.headers["location"])
    assert page.status_code == 200  # this browser stays signed in
    assert "Your password is changed. You are signed out on your other devices." in page.text
    assert not signed_in(laptop)
    assert new_panel(ctx).sign_in().status_code == 401
    assert new_panel(ctx).sign_in(password=NEW_PASSWORD).status_code == 303
    assert panel.client.get(reset_link).status_code == 410  # an older reset link is withdrawn


@pytest.mark.parametrize(
    ("current", "new", "message"),
    [
        ("", NEW_PASSWORD, "Enter your current password."),
        ("not the password", NEW_PASSWORD, "The current password is not right."),
        (PASSWORD, "", "Enter a password."),
        (PASSWORD, "short", "The password must be at least 10 characters."),
        (PASSWORD, "x" * 257, "The new password is too long (at most 256 characters)."),
        ("x" * 257, NEW_PASSWORD, "The current password is too long (at most 256 characters)."),
    ],
)
def test_bad_password_input_changes_nothing(
    ctx: Context, panel: Panel, current: str, new: str, message: str
) -> None:
    panel.sign_up()
    before = user(ctx).password_hash
    response = change_password(panel, current, new)
    assert response.status_code == 422
    assert message in response.text
    assert user(ctx).password_hash == before
    assert current not in response.text or not current  # passwords are never sent back
    assert signed_in(panel)


def test_guessing_the_current_password_is_rate_limited(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    for _ in range(5):
        assert change_password(panel, "wrong guess!", NEW_PASSWORD).status_code == 422
    refused = change_password(panel, PASSWORD, NEW_PASSWORD)
    assert refused.status_code == 429
    assert "Too many attempts to change the password" in refused.text


# --- who may do what ----------------------------------------------------------------------


def test_a_member_sees_the_settings_but_changes_only_their_password(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up(name="Shop", timezone="UTC")
    add_member(ctx)
    member = new_panel(ctx)
    assert member.sign_in("member@example.com").status_code == 303
    page = member.client.get("/panel/settings")
    assert page.status_code == 200
    assert "Only the account's owner can change these." in page.text
    assert 'action="/panel/settings/account"' not in page.text
    assert 'action="/panel/settings/contact-email"' not in page.text
    assert 'action="/panel/settings/password"' in page.text

    for path, fields, what in [
        ("/panel/settings/account", {"name": "Mine", "timezone": "Asia/Tokyo"}, "settings"),
        ("/panel/settings/contact-email", {"email": "me@example.com"}, "contact email"),
        ("/panel/settings/contact-email/cancel", {}, "contact email"),
    ]:
        refused = member.post(path, fields, page="/panel/settings")
        assert refused.status_code == 403, path
        assert "Only the account&#39;s owner can change the" in refused.text
        assert what in refused.text
    assert (account(ctx).name, account(ctx).timezone) == ("Shop", "UTC")
    assert emails(ctx, "contact_email_confirm") == []
    assert change_password(member, PASSWORD, NEW_PASSWORD).status_code == 303


def test_every_settings_form_refuses_a_missing_or_foreign_csrf_token(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    add_member(ctx)
    ask_contact_email(panel, "billing@example.com")
    with ctx.db.read() as session:
        (link,) = session.scalars(select(EmailLink).where(EmailLink.purpose == "confirm_email"))
    member_id = user(ctx, "member@example.com").id
    before = account(ctx)
    forms = {
        "/panel/settings/account": {"name": "Changed", "timezone": "Asia/Tokyo"},
        "/panel/settings/contact-email": {"email": "other@example.com"},
        "/panel/settings/contact-email/cancel": {},
        CONFIRM: {"token": figures(emails(ctx, "contact_email_confirm")[0])["token"]},
        "/panel/settings/password": {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        "/panel/settings/team/invite": {"email": "new@example.com", "role": "member"},
        f"/panel/settings/team/{member_id}/role": {"role": "owner"},
        f"/panel/settings/team/{member_id}/remove": {},
        "/panel/password/forgot": {"email": "owner@example.com"},
        "/panel/password/reset": {"token": "x" * 43, "password": NEW_PASSWORD},
        "/panel/invite/accept": {"token": "x" * 43, "password": NEW_PASSWORD},
    }
    foreign = new_panel(ctx).csrf()
    for token in (None, "", foreign):
        data = {} if token is None else {"csrf_token": token}
        for path, fields in forms.items():
            response = panel.client.post(path, data=data | fields, follow_redirects=False)
            assert response.status_code == 403, (path, token)
            assert "This form has expired; reload the page and try again." in response.text
    after = account(ctx)
    assert (after.name, after.timezone, after.contact_email) == (
        before.name,
        before.timezone,
        before.contact_email,
    )
    assert user(ctx, "member@example.com").role == "member"
    # The confirmation and the member's invitation, from before.
    assert len(emails(ctx, "contact_email_confirm")) == len(emails(ctx, "team_invitation")) == 1
    with ctx.db.read() as session:
        still = session.get(EmailLink, link.id)
        assert still is not None and still.used_at is None
    assert signed_in(panel)
