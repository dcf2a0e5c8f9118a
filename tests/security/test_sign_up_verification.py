"""Signing up with someone else's address (issue #8, item 8): until the link sent to the
address is opened, the account can invite nobody, change its contact email to nobody,
and farm no free tokens; the address's real owner can take the account over.

Over HTTP against the real app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from chatmeter.accounts import service as accounts
from chatmeter.billing import renewals
from chatmeter.context import Context
from chatmeter.panel import auth
from chatmeter.web.app import create_app
from tests.panel.test_password_reset import emails, figures, link_path, signed_in, user
from tests.support.accounts import balance_of
from tests.support.panel import PASSWORD, Panel, new_panel

VERIFY = "/panel/verify-email"
VICTIM = "ceo@bigco.example"
UNVERIFIED = "Confirm your email address first"


@pytest.fixture
def free(ctx: Context) -> int:
    ctx.settings.free_tokens = 1000
    return 1000


def squatter(ctx: Context) -> Panel:
    """A stranger who signs up with the victim's address (and cannot read its mail)."""
    browser = new_panel(ctx)
    assert browser.sign_up(VICTIM, verify=False, name="BigCo").status_code == 303
    return browser


def test_an_unverified_account_invites_nobody_and_gets_no_free_tokens(
    ctx: Context, free: int
) -> None:
    browser = squatter(ctx)
    dashboard = browser.client.get("/panel/dashboard").text
    assert 'data-testid="verify-email"' in dashboard
    assert "Please confirm your email address." in dashboard

    settings = browser.client.get("/panel/settings").text
    assert (
        f"Confirm your email address first to invite people: open the link we sent to {VICTIM}"
        in settings
    )
    invited = browser.post(
        "/panel/settings/team/invite",
        {"email": "someone@elsewhere.example", "role": "member"},
        page="/panel/settings",
    )
    assert invited.status_code == 403
    assert UNVERIFIED + ", to invite people" in invited.text
    assert emails(ctx, "team_invitation") == []

    moved = browser.post(
        "/panel/settings/contact-email", {"email": "me@squat.example"}, page="/panel/settings"
    )
    assert moved.status_code == 403
    assert emails(ctx, "contact_email_confirm") == []

    account_id = user(ctx, VICTIM).account_id
    assert balance_of(ctx, account_id).available == 0
    # Nor at the next renewal.
    ctx.clock.set(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    renewals.run_renewals(ctx)
    assert balance_of(ctx, account_id).available == 0

    # What it may do: build and test assistants, buy tokens.
    assert browser.buy(1).status_code == 200
    assert balance_of(ctx, account_id).available == ctx.settings.package_tokens


def test_the_api_changes_no_contact_email_for_an_unverified_account(ctx: Context) -> None:
    squatter(ctx)
    account_id = user(ctx, VICTIM).account_id
    with ctx.db.uow() as uow:
        key = accounts.issue_api_key(uow.session, account_id=account_id, now=ctx.clock.now())
        uow.commit()
    client = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {key}"})
    response = client.patch("/api/v1/account", json={"contact_email": "me@squat.example"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert emails(ctx, "contact_email_changed") == []
    assert client.patch("/api/v1/account", json={"name": "Renamed"}).status_code == 200


def test_the_link_verifies_once_and_brings_the_free_tokens(ctx: Context, free: int) -> None:
    owner = new_panel(ctx)
    assert owner.sign_up("owner@shop.example", verify=False).status_code == 303
    (message,) = emails(ctx, "verify_email")
    assert message.to_address == "owner@shop.example"
    assert figures(message)["free_tokens"] == free
    path = link_path(message, VERIFY)
    account_id = user(ctx, "owner@shop.example").account_id

    # A mail scanner that opens the link verifies nothing: the page asks for a button.
    scanner = new_panel(ctx)
    shown = scanner.client.get(path)
    assert shown.status_code == 200
    assert "Confirm owner@shop.example" in shown.text
    assert shown.headers["Referrer-Policy"] == "no-referrer"
    assert balance_of(ctx, account_id).available == 0

    token = path.split("token=", 1)[1]
    done = owner.post(VERIFY, {"token": token}, page="/panel/dashboard")
    assert done.status_code == 303 and done.headers["location"] == "/panel/dashboard?done=verified"
    page = owner.client.get(done.headers["location"]).text
    assert "Your email address is confirmed." in page
    assert 'data-testid="verify-email"' not in page
    assert balance_of(ctx, account_id).available == free
    assert owner.post(VERIFY, {"token": token}, page="/panel/dashboard").status_code == 410
    assert balance_of(ctx, account_id).available == free  # once

    invited = owner.post(
        "/panel/settings/team/invite",
        {"email": "member@shop.example", "role": "member"},
        page="/panel/settings",
    )
    assert invited.status_code == 303
    ctx.clock.set(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    renewals.run_renewals(ctx)
    assert balance_of(ctx, account_id).available == free  # December's, November's expired


def test_the_link_can_be_sent_again_and_only_the_newest_works(ctx: Context) -> None:
    owner = new_panel(ctx)
    owner.sign_up("owner@shop.example", verify=False)
    first = figures(emails(ctx, "verify_email")[0])["token"]
    again = owner.post(f"{VERIFY}/resend", {}, page="/panel/dashboard")
    assert again.status_code == 303
    assert "We sent a new confirmation link." in owner.client.get(again.headers["location"]).text
    second = figures(emails(ctx, "verify_email")[1])["token"]
    assert owner.post(VERIFY, {"token": first}, page="/panel/dashboard").status_code == 410
    assert owner.post(VERIFY, {"token": second}, page="/panel/dashboard").status_code == 303
    done = owner.post(f"{VERIFY}/resend", {}, page="/panel/dashboard")
    assert done.status_code == 409
    assert "Your email address is already confirmed." in done.text


def test_sending_the_link_again_is_rate_limited(ctx: Context) -> None:
    owner = new_panel(ctx)
    owner.sign_up("owner@shop.example", verify=False)
    codes = [
        owner.post(f"{VERIFY}/resend", {}, page="/panel/dashboard").status_code for _ in range(6)
    ]
    assert codes == [303] * 5 + [429]
    assert len(emails(ctx, "verify_email")) == 6  # the sign-up's and five more


@pytest.mark.parametrize("query", ["", "?token=nope", "?token=" + "B" * 43])
def test_a_forged_link_gets_a_readable_page(ctx: Context, query: str) -> None:
    page = new_panel(ctx).client.get(VERIFY + query)
    assert page.status_code == 404
    assert "This link is not valid" in page.text


def test_the_link_expires_after_3_days(ctx: Context) -> None:
    owner = new_panel(ctx)
    owner.sign_up("owner@shop.example", verify=False)
    token = figures(emails(ctx, "verify_email")[0])["token"]
    ctx.clock.advance(days=3)
    expired = owner.post(VERIFY, {"token": token}, page="/panel/dashboard")
    assert expired.status_code == 410
    assert "This verification link has expired (it works for 3 days)" in expired.text


def test_the_addresss_real_owner_takes_the_account_over_by_password_reset(
    ctx: Context, free: int
) -> None:
    stranger = squatter(ctx)
    victim = new_panel(ctx)
    victim.post("/panel/password/forgot", {"email": VICTIM})
    token = figures(emails(ctx, "password_reset")[0])["token"]
    done = victim.post(
        "/panel/password/reset",
        {"token": token, "password": "the real owner's passphrase"},
        page="/panel/password/forgot",
    )
    assert done.status_code == 303
    assert signed_in(victim) and not signed_in(stranger)  # the squatter's session ended
    account_id = user(ctx, VICTIM).account_id
    assert balance_of(ctx, account_id).available == free  # verified by the reset
    assert 'data-testid="verify-email"' not in victim.client.get("/panel/dashboard").text
    assert new_panel(ctx).sign_in(VICTIM, PASSWORD).status_code == 401


def test_the_cookie_prefix_does_not_matter_to_the_flow(ctx: Context) -> None:
    """Verification works under https too, where the cookies are ``__Host-`` ones."""
    ctx.settings.base_url = "https://panel.shop.example"
    owner = Panel(TestClient(create_app(ctx), base_url="https://panel.shop.example"))
    assert owner.sign_up("owner@shop.example").status_code == 303
    assert owner.client.cookies.get(auth.HOST_PREFIX + auth.SESSION_COOKIE)
