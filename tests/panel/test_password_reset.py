"""Password reset by email, and sessions that end: sign-out, reset, a copied cookie.

The journey test goes all the way: the form, the outbox, a real SMTP server on
loopback, the link read from the received email, the new password, and the old
password and the old cookie refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from chatmeter.accounts import links, users
from chatmeter.accounts.models import EmailLink, LinkPurpose, User
from chatmeter.cli import app
from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.notifications.delivery import DeliveryReport, deliver_due
from chatmeter.notifications.mailers import SmtpMailer
from chatmeter.notifications.models import OutboxMessage
from chatmeter.panel import auth
from tests.notifications.smtp_server import SmtpServer
from tests.support.panel import PASSWORD, Panel, new_panel

NEW_PASSWORD = "a brand new passphrase"
NEUTRAL = "we have sent it a link to choose a new password"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# --- helpers, also used by the settings and team tests ----------------------------------


def emails(ctx: Context, kind: str | None = None) -> list[OutboxMessage]:
    with ctx.db.read() as session:
        statement = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind is not None:
            statement = statement.where(OutboxMessage.kind == kind)
        return list(session.scalars(statement))


def figures(message: OutboxMessage) -> dict[str, Any]:
    context: dict[str, Any] = json.loads(message.context)
    return context


def link_path(message: OutboxMessage, path: str) -> str:
    """The address a queued email links to, as the panel's client requests it."""
    return f"{path}?token={figures(message)['token']}"


def deliver_over_smtp(ctx: Context, server: SmtpServer) -> DeliveryReport:
    mailer = SmtpMailer(server.host, server.port, timeout=5)
    return deliver_due(ctx.db, mailer=mailer, settings=ctx.settings, now=ctx.clock.now())


def link_in(message: EmailMessage, settings: Settings, path: str) -> str:
    """The one link to ``path`` in both parts of a received email, as a path and query."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    pattern = re.compile(re.escape(settings.base_url + path) + r"\?token=[A-Za-z0-9_-]+")
    links = set(pattern.findall(text.get_content()))
    assert len(links) == 1, text.get_content()
    (link,) = links
    assert link in html.get_content()
    return link.removeprefix(settings.base_url)


def user(ctx: Context, email: str = "owner@example.com") -> User:
    with ctx.db.read() as session:
        found = session.scalar(select(User).where(User.email == email))
    assert found is not None
    return found


def forgot(panel: Panel, email: str) -> Any:
    return panel.post("/panel/password/forgot", {"email": email})


def reset(panel: Panel, path: str, password: str = NEW_PASSWORD) -> Any:
    token = path.split("token=", 1)[1]
    data = {"token": token, "password": password}
    # Any page with a form gives this browser's CSRF token; a spent link's page has none.
    return panel.post("/panel/password/reset", data, page="/panel/password/forgot")


def signed_in(panel: Panel) -> bool:
    response = panel.client.get("/panel/dashboard", follow_redirects=False)
    return response.status_code == 200


# --- the journey -----------------------------------------------------------------------


def test_forgot_password_all_the_way_over_smtp(
    ctx: Context, panel: Panel, smtp_server: SmtpServer
) -> None:
    panel.sign_up()
    assert deliver_over_smtp(ctx, smtp_server) == DeliveryReport(sent=1)  # the verification
    smtp_server.inbox.messages.clear()
    elsewhere = new_panel(ctx)  # another device, or a thief with a copy of the cookie
    assert elsewhere.sign_in().status_code == 303
    stolen = elsewhere.client.cookies.get(auth.SESSION_COOKIE)
    assert stolen and signed_in(elsewhere)

    browser = new_panel(ctx)
    assert 'href="/panel/password/forgot"' in browser.client.get("/panel/sign-in").text
    asked = forgot(browser, "Owner@Example.com")
    assert asked.status_code == 200
    assert NEUTRAL in asked.text

    assert deliver_over_smtp(ctx, smtp_server) == DeliveryReport(sent=1)
    (received,) = smtp_server.inbox.messages
    assert received["To"] == "owner@example.com"
    assert received["Subject"] == "Reset your Chatmeter password"
    path = link_in(received, ctx.settings, "/panel/password/reset")
    (sent,) = emails(ctx, "password_reset")
    assert figures(sent)["token"] == "(sent)"  # once sent, only the recipient has the link
    assert path.rsplit("=", 1)[1] not in sent.context
    form = browser.client.get(path)
    assert form.status_code == 200
    assert "Choose a new password" in form.text and "owner@example.com" in form.text
    assert form.headers["Referrer-Policy"] == "no-referrer"

    done = reset(browser, path)
    assert done.status_code == 303 and done.headers["location"] == "/panel/dashboard"
    assert signed_in(browser)
    assert not signed_in(elsewhere)  # every other session ended
    thief = new_panel(ctx)
    thief.client.cookies.set(auth.SESSION_COOKIE, stolen)
    assert not signed_in(thief)

    assert new_panel(ctx).sign_in().status_code == 401  # the old password
    assert new_panel(ctx).sign_in(password=NEW_PASSWORD).status_code == 303
    again = browser.client.get(path)
    assert again.status_code == 410
    assert "This password reset link was already used; ask for a new one." in again.text


def test_the_answer_is_the_same_for_an_unknown_email(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    known = forgot(new_panel(ctx), "owner@example.com")
    unknown = forgot(new_panel(ctx), "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("owner@example.com", "X") == unknown.text.replace(
        "nobody@example.com", "X"
    ).replace(*_csrf_pair(known.text, unknown.text))
    (message,) = emails(ctx, "password_reset")
    assert message.to_address == "owner@example.com"
    assert set(figures(message)) == {"account_name", "email", "token", "expires_at"}


def _csrf_pair(first: str, second: str) -> tuple[str, str]:
    """Each browser has its own CSRF token; the pages differ by nothing else."""
    tokens = [re.search(r'name="csrf-token" content="([^"]+)"', page) for page in (second, first)]
    assert tokens[0] and tokens[1]
    return tokens[0][1], tokens[1][1]


def test_only_a_hash_of_the_token_is_stored(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    forgot(panel, "owner@example.com")
    (message,) = emails(ctx, "password_reset")
    token = figures(message)["token"]
    with ctx.db.read() as session:
        (row,) = session.scalars(select(EmailLink).where(EmailLink.purpose == "reset"))
    assert token not in row.token_hash
    assert row.token_hash == links.token_hash(token)
    assert row.expires_at == ctx.clock.now() + links.LIFETIMES[row.purpose]


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Enter the email you sign in with."),
        ("   ", "Enter the email you sign in with."),
        ("a" * 400 + "@example.com", "The email is too long (at most 320 characters)."),
    ],
)
def test_bad_input_in_the_forgot_form(ctx: Context, panel: Panel, email: str, message: str) -> None:
    panel.sign_up()
    response = forgot(panel, email)
    assert response.status_code == 422
    assert message in response.text
    assert 'class="alert alert-error"' in response.text
    assert emails(ctx, "password_reset") == []


def test_a_file_instead_of_an_email_is_refused(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    token = panel.csrf("/panel/password/forgot")
    response = panel.client.post(
        "/panel/password/forgot",
        data={"csrf_token": token},
        files={"email": ("email.txt", b"owner@example.com", "text/plain")},
    )
    assert response.status_code == 422
    assert "Email must be text." in response.text
    assert emails(ctx, "password_reset") == []


def test_reset_requests_are_rate_limited_per_email_and_per_address(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    for _ in range(5):
        assert forgot(panel, "owner@example.com").status_code == 200
    refused = forgot(panel, "OWNER@example.com")
    assert refused.status_code == 429
    assert "Too many password reset requests; please wait a while and try again." in refused.text
    assert len(emails(ctx, "password_reset")) == 5
    # Per address: many different emails from one client are limited too.
    others = [forgot(panel, f"someone{n}@example.com").status_code for n in range(16)]
    assert others == [200] * 15 + [429]


def test_an_expired_link_is_refused_and_changes_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    forgot(panel, "owner@example.com")
    (message,) = emails(ctx, "password_reset")
    path = link_path(message, "/panel/password/reset")
    ctx.clock.advance(minutes=59)
    assert panel.client.get(path).status_code == 200
    ctx.clock.advance(minutes=1)
    page = panel.client.get(path)
    assert page.status_code == 410
    assert "This password reset link has expired (it works for 1 hour)" in page.text
    assert 'href="/panel/password/forgot"' in page.text
    assert reset(panel, path).status_code == 410
    assert new_panel(ctx).sign_in().status_code == 303  # the old password still works


@pytest.mark.parametrize(
    "query", ["", "?token=", "?token=abc", "?token=" + "A" * 43, "?token=" + "%00" * 43]
)
def test_a_forged_or_cut_off_link_gets_a_readable_page(
    ctx: Context, panel: Panel, query: str
) -> None:
    panel.sign_up()
    page = panel.client.get("/panel/password/reset" + query)
    assert page.status_code == 404
    assert "This link is not valid; check that you copied all of it from the email." in page.text
    posted = reset(panel, "?token=" + query.removeprefix("?token="), PASSWORD)
    assert posted.status_code == 404


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "Enter a password."),
        ("short", "The password must be at least 10 characters."),
        ("x" * 300, "The password is too long (at most 256 characters)."),
    ],
)
def test_a_bad_new_password_keeps_the_link_usable(
    ctx: Context, panel: Panel, password: str, message: str
) -> None:
    panel.sign_up()
    forgot(panel, "owner@example.com")
    (email,) = emails(ctx, "password_reset")
    path = link_path(email, "/panel/password/reset")
    before = user(ctx).password_hash
    refused = reset(panel, path, password)
    assert refused.status_code == 422
    assert message in refused.text
    assert "Set the new password" in refused.text  # the form again, with its token
    assert user(ctx).password_hash == before
    assert reset(panel, path).status_code == 303


def test_the_reset_form_refuses_a_missing_csrf_token(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    forgot(panel, "owner@example.com")
    (email,) = emails(ctx, "password_reset")
    token = figures(email)["token"]
    refused = panel.client.post(
        "/panel/password/reset", data={"token": token, "password": NEW_PASSWORD}
    )
    assert refused.status_code == 403
    assert "This form has expired; reload the page and try again." in refused.text
    assert reset(panel, link_path(email, "/panel/password/reset")).status_code == 303


def test_using_one_link_withdraws_the_others(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    forgot(panel, "owner@example.com")
    forgot(panel, "owner@example.com")
    first, second = (link_path(m, "/panel/password/reset") for m in emails(ctx, "password_reset"))
    assert reset(panel, second).status_code == 303
    late = panel.client.get(first)
    assert late.status_code == 410


def test_two_clicks_at_once_use_the_link_once(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    forgot(panel, "owner@example.com")
    (email,) = emails(ctx, "password_reset")
    token = figures(email)["token"]
    with ctx.db.uow() as uow:
        row = links.find(uow.session, purpose=LinkPurpose.RESET, token=token, now=ctx.clock.now())
        links.use(uow.session, row=row, now=ctx.clock.now())
        # A second request that found the same row before the first committed.
        with pytest.raises(links.SpentLink):
            links.use(uow.session, row=row, now=ctx.clock.now())


# --- sessions that end -----------------------------------------------------------------


def test_sign_out_ends_a_copied_cookie_too(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    copied = panel.client.cookies.get(auth.SESSION_COOKIE)
    assert copied
    out = panel.post("/panel/sign-out", {}, page="/panel/dashboard")
    assert out.status_code == 200 and "You are signed out." in out.text
    thief = new_panel(ctx)
    thief.client.cookies.set(auth.SESSION_COOKIE, copied)
    assert not signed_in(thief)
    # Signing in again right away works: the new session began after the sign-out.
    assert panel.sign_in().status_code == 303
    assert signed_in(panel)


def test_sign_out_ends_every_session_of_the_user(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    laptop = new_panel(ctx)
    laptop.sign_in()
    assert signed_in(laptop)
    panel.post("/panel/sign-out", {}, page="/panel/dashboard")
    assert not signed_in(laptop)


def test_a_session_is_good_only_with_its_users_current_secret(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    settings = ctx.settings
    with ctx.db.read() as session:
        user = session.scalar(select(User))
    assert user is not None
    value = auth.session_value(settings, user, now=1_000.0)
    claims = auth.read_claims(settings, value, now=1_001.0)
    assert claims is not None and auth.belongs_to(settings, claims, user)
    assert auth.read_claims(settings, value + "0", now=1_001.0) is None  # signature's length
    assert auth.read_claims(settings, "7.1000.abc", now=1_001.0) is None

    stolen = auth.session_value(settings, user)
    panel.client.cookies.set(auth.SESSION_COOKIE, stolen)
    assert signed_in(panel)
    with ctx.db.uow() as uow:
        row = uow.session.get(User, user.id)
        assert row is not None
        users.end_sessions(uow.session, user=row)
        uow.commit()
    assert not signed_in(panel)  # the same cookie, signed with the old secret


# --- an account the operator opened ------------------------------------------------------


def test_the_operator_hands_the_owner_a_set_password_link(ctx: Context, panel: Panel) -> None:
    """``chatmeter accounts create`` prints a reset link: the owner's only way in."""
    environ = {
        "CHATMETER_DATABASE_URL": ctx.settings.database_url,
        "CHATMETER_ENV": "test",
        "CHATMETER_DATA_DIR": str(ctx.settings.data_dir),
        "CHATMETER_NOW": ctx.clock.now().isoformat(),
        "CHATMETER_BASE_URL": ctx.settings.base_url,
    }
    command = ["accounts", "create", "--email", "shop@example.com", "--json"]
    result = CliRunner().invoke(app, command, env=environ)
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    prefix = ctx.settings.base_url + "/panel/password/reset?token="
    assert created["set_password_url"].startswith(prefix)
    assert panel.sign_in("shop@example.com", PASSWORD).status_code == 401  # no password yet
    path = created["set_password_url"].removeprefix(ctx.settings.base_url)
    assert "shop@example.com" in panel.client.get(path).text
    assert reset(panel, path).status_code == 303
    assert signed_in(panel)
    assert reset(new_panel(ctx), path).status_code == 410  # once only
    assert new_panel(ctx).sign_in("shop@example.com", NEW_PASSWORD).status_code == 303
    again = CliRunner().invoke(app, command, env=environ)
    assert again.exit_code == 1 and "already exists" in again.output + again.stderr
