"""Sign up, sign in and out; the session cookie; CSRF; the sign-in rate limit; bad input."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from chatmeter.accounts.models import Account, User
from chatmeter.billing.models import Subscription
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.panel import auth
from tests.support.panel import PASSWORD, Panel, new_panel


def users(ctx: Context) -> list[User]:
    with ctx.db.read() as session:
        return list(session.scalars(select(User)))


def count(ctx: Context, model: type) -> int:
    with ctx.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_sign_up_creates_the_account_its_subscription_and_its_owner(
    ctx: Context, panel: Panel
) -> None:
    response = panel.sign_up("Owner@Example.com", name="Northwind", timezone="Europe/Berlin")
    assert response.status_code == 303
    assert response.headers["location"] == "/panel/dashboard"
    cookie = response.headers["set-cookie"]
    assert "cm_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # base_url is http here
    (user,) = users(ctx)
    assert user.role == "owner"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    with ctx.db.read() as session:
        account = session.get(Account, user.account_id)
        assert account is not None and account.name == "Northwind"
        assert account.timezone == "Europe/Berlin"
        assert session.get(Subscription, user.account_id) is not None
    page = panel.client.get("/panel/dashboard")
    assert page.status_code == 200
    assert "Northwind" in page.text


def test_the_session_cookie_is_secure_behind_https(ctx: Context, panel: Panel) -> None:
    ctx.settings.base_url = "https://panel.example.com"
    assert "Secure" in panel.sign_up().headers["set-cookie"]


def test_sign_in_and_sign_out(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    panel.client.cookies.delete(auth.SESSION_COOKIE)
    assert panel.client.get("/panel/dashboard", follow_redirects=False).status_code == 303

    wrong = panel.sign_in(password="not the password")
    assert wrong.status_code == 401
    assert "The email or password is not right" in wrong.text
    unknown = panel.sign_in(email="nobody@example.com")
    assert unknown.status_code == 401
    assert "The email or password is not right" in unknown.text

    right = panel.sign_in()
    assert right.status_code == 303
    assert panel.client.get("/panel/dashboard").status_code == 200

    out = panel.post("/panel/sign-out", {}, page="/panel/dashboard")
    assert out.status_code == 200
    assert "You are signed out." in out.text
    assert 'cm_session=""' in out.headers["set-cookie"]
    assert panel.client.get("/panel/dashboard", follow_redirects=False).status_code == 303


def test_a_forged_or_old_session_is_refused(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    settings = ctx.settings
    (user,) = users(ctx)
    value = auth.session_value(settings, user, now=1_000)
    claims = auth.read_claims(settings, value, now=1_001)
    assert claims is not None and (claims.user_id, claims.issued) == (user.id, 1_000)
    assert auth.belongs_to(settings, claims, user)
    forged = value.rsplit(".", 1)[0] + "." + "0" * 64
    forged_claims = auth.read_claims(settings, forged, now=1_001)
    assert forged_claims is not None and not auth.belongs_to(settings, forged_claims, user)
    other = Settings(_env_file=None, env=Env.TEST, secret_key="another secret key " * 3)
    foreign = auth.read_claims(settings, auth.session_value(other, user, now=1_000), now=1_001)
    assert foreign is not None and not auth.belongs_to(settings, foreign, user)
    assert auth.read_claims(settings, value, now=1_000 + auth.SESSION_SECONDS + 1) is None
    assert auth.read_claims(settings, "1.2.3.4") is None
    assert auth.read_claims(settings, "1.0.1000.abc") is None  # a cookie from before secrets
    assert auth.read_claims(settings, "1.1000." + "é" * 64) is None
    panel.client.cookies.clear()
    panel.client.cookies.set(auth.SESSION_COOKIE, forged)
    assert panel.client.get("/panel/dashboard", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": ""}, "Enter a valid email address"),
        ({"email": "not-an-email"}, "Enter a valid email address"),
        ({"email": "a" * 400 + "@example.com"}, "too long"),
        ({"password": ""}, "Enter a password"),
        ({"password": "short"}, "at least 10 characters"),
        ({"password": "x" * 300}, "too long"),
        ({"name": "n" * 201}, "too long"),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone"),
    ],
)
def test_bad_sign_up_input_gives_a_message_and_creates_nothing(
    ctx: Context, panel: Panel, fields: dict[str, str], message: str
) -> None:
    response = panel.sign_up(**fields)
    assert response.status_code == 422
    assert message in response.text
    assert 'class="alert alert-error"' in response.text
    assert users(ctx) == []
    assert count(ctx, Account) == 0


def test_an_email_signs_up_once(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    again = new_panel(ctx).sign_up()
    assert again.status_code == 409
    assert "An account with this email already exists; sign in instead." in again.text
    assert len(users(ctx)) == 1
    assert count(ctx, Account) == 1


def test_empty_sign_in_gives_a_message(ctx: Context, panel: Panel) -> None:
    response = panel.sign_in(email="", password="")
    assert response.status_code == 422
    assert "Enter your email and password." in response.text


def test_sign_in_is_rate_limited(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    for _ in range(5):
        assert panel.sign_in(password="wrong password!").status_code == 401
    refused = panel.sign_in()  # even the right password, until the minute has passed
    assert refused.status_code == 429
    assert "Too many sign-in attempts; please wait a minute and try again." in refused.text
    # Another email from elsewhere is not affected.
    assert new_panel(ctx).sign_in(email="other@example.com").status_code == 401


def test_successful_sign_ins_do_not_count_towards_the_limit(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    for _ in range(8):
        assert panel.sign_in().status_code == 303
    # Four slips, then the right password: the slips before it are forgiven, so four
    # more slips (eight in the minute) still get the form back rather than a refusal.
    for _ in range(4):
        assert panel.sign_in(password="wrong password!").status_code == 401
    assert panel.sign_in().status_code == 303
    for _ in range(4):
        assert panel.sign_in(password="wrong password!").status_code == 401
    assert panel.sign_in().status_code == 303
    # A fifth failure in a row is the limit again.
    for _ in range(5):
        assert panel.sign_in(password="wrong password!").status_code == 401
    assert panel.sign_in().status_code == 429


@pytest.mark.parametrize("token", [None, "", "0" * 64])
def test_every_form_refuses_a_missing_or_wrong_csrf_token(
    ctx: Context, panel: Panel, token: str | None
) -> None:
    panel.sign_up()
    data = {} if token is None else {"csrf_token": token}
    forms = {
        "/panel/sign-up": {"email": "new@example.com", "password": PASSWORD},
        "/panel/sign-in": {"email": "owner@example.com", "password": PASSWORD},
        "/panel/billing/packages": {"packages": "3"},
        "/panel/billing/cancel": {},
        "/panel/sign-out": {},
    }
    for path, fields in forms.items():
        response = panel.client.post(path, data=data | fields, follow_redirects=False)
        assert response.status_code == 403, path
        assert "This form has expired; reload the page and try again." in response.text
    purchase = panel.buy(2, token=token or "")
    assert purchase.status_code == 403
    assert len(users(ctx)) == 1
    # Still signed in: the refused sign-out changed nothing.
    assert panel.client.get("/panel/dashboard").status_code == 200


def test_a_csrf_token_from_another_browser_is_refused(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    stranger = new_panel(ctx).csrf()
    response = panel.client.post(
        "/panel/billing/packages", data={"csrf_token": stranger, "packages": "3"}
    )
    assert response.status_code == 403
