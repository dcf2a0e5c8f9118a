"""The panel's forms and cookies against a stranger (issue #8, item 8): a CSRF token
works only with the session it was shown to; a bad token is a 403 with the form's
message, never a 500; under https the cookies carry the ``__Host-`` prefix and every
response asks for https from now on (HSTS)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.panel import auth
from chatmeter.web.app import create_app
from tests.support.panel import CSRF, Panel, new_panel

EXPIRED = "This form has expired; reload the page and try again."


def test_a_planted_csrf_seed_and_its_token_do_not_work_in_a_victims_session(
    ctx: Context,
) -> None:
    """Without binding, a stranger who can set a cookie on the victim's browser (a sibling
    subdomain can) plants his own seed and submits the token the panel showed *him*."""
    attacker = new_panel(ctx)
    token = attacker.csrf("/panel/sign-in")
    seed = attacker.client.cookies.get(auth.CSRF_COOKIE)
    assert seed

    victim = new_panel(ctx)
    assert victim.sign_up("victim@shop.example").status_code == 303
    victim.client.cookies.delete(auth.CSRF_COOKIE)
    victim.client.cookies.set(auth.CSRF_COOKIE, seed)  # the planted cookie
    response = victim.client.post(
        "/panel/billing/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 403
    assert EXPIRED in response.text
    purchase = victim.buy(1, token=token)
    assert purchase.status_code == 403
    billing = victim.client.get("/panel/billing").text
    assert "cancelled" not in billing.lower()


def test_a_token_shown_before_sign_in_does_not_work_after_it(ctx: Context) -> None:
    browser = new_panel(ctx)
    before = browser.csrf("/panel/sign-in")
    assert browser.sign_up("owner@shop.example").status_code == 303
    stale = browser.client.post(
        "/panel/billing/cancel", data={"csrf_token": before}, follow_redirects=False
    )
    assert stale.status_code == 403
    fresh = browser.post("/panel/billing/cancel", {}, page="/panel/billing")
    assert fresh.status_code == 303


def test_signing_out_shows_a_sign_in_form_that_works(ctx: Context) -> None:
    browser = new_panel(ctx)
    browser.sign_up("owner@shop.example")
    out = browser.post("/panel/sign-out", {}, page="/panel/dashboard")
    assert out.status_code == 200
    match = CSRF.search(out.text)
    assert match
    data = {"csrf_token": match[1], "email": "owner@shop.example", "password": "x" * 12}
    again = browser.client.post("/panel/sign-in", data=data, follow_redirects=False)
    assert again.status_code == 401  # a wrong password, not an expired form


@pytest.mark.parametrize("token", ["é", "ü" * 64, "\u2603" * 64, "\x00"])
def test_a_non_ascii_csrf_token_is_refused_with_the_forms_message(ctx: Context, token: str) -> None:
    browser = new_panel(ctx)
    browser.client.get("/panel/sign-in")  # the seed cookie
    for path, fields in {
        "/panel/sign-in": {"email": "owner@shop.example", "password": "x" * 12},
        "/panel/sign-up": {"email": "new@shop.example", "password": "x" * 12},
        "/panel/password/forgot": {"email": "owner@shop.example"},
    }.items():
        response = browser.client.post(
            path, data={"csrf_token": token} | fields, follow_redirects=False
        )
        assert response.status_code == 403, path
        assert EXPIRED in response.text


def test_a_non_ascii_csrf_header_is_refused(ctx: Context) -> None:
    browser = new_panel(ctx)
    browser.sign_up("owner@shop.example")
    response = browser.client.post(
        "/panel/tokens",
        json={"packages": 1, "key": "window-key-0001"},
        headers={"X-CSRF-Token": ("é" * 64).encode("latin-1")},
    )
    assert response.status_code == 403
    assert response.json()["error"]["message"] == EXPIRED


# --- under https -----------------------------------------------------------------------


def https_panel(ctx: Context) -> Panel:
    ctx.settings.base_url = "https://panel.shop.example"
    return Panel(TestClient(create_app(ctx), base_url="https://panel.shop.example"))


def test_under_https_the_cookies_carry_the_host_prefix(ctx: Context) -> None:
    browser = https_panel(ctx)
    response = browser.sign_up("owner@shop.example")
    assert response.status_code == 303
    assert browser.client.get("/panel/dashboard").status_code == 200
    cookies = response.headers.get_list("set-cookie")
    (session,) = [c for c in cookies if c.startswith("__Host-cm_session=")]
    for cookie in [session, *[c for c in cookies if c.startswith("__Host-cm_csrf=")]]:
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"secure", "path", "httponly"} <= attributes
        assert "domain" not in attributes
        assert "Path=/" in cookie
    assert not [c for c in cookies if c.startswith(("cm_session=", "cm_csrf="))]


def test_under_https_a_cookie_without_the_prefix_is_ignored(ctx: Context) -> None:
    browser = https_panel(ctx)
    browser.sign_up("owner@shop.example")
    value = browser.client.cookies.get("__Host-cm_session")
    assert value
    planted = Panel(TestClient(browser.client.app, base_url="https://panel.shop.example"))
    planted.client.cookies.set(auth.SESSION_COOKIE, value)  # what a sibling host could set
    response = planted.client.get("/panel/dashboard", follow_redirects=False)
    assert response.status_code == 303


def test_under_https_every_response_asks_for_https(ctx: Context) -> None:
    browser = https_panel(ctx)
    browser.sign_up("owner@shop.example")
    for path in ("/panel/sign-in", "/panel/dashboard", "/api/v1/balance", "/healthz"):
        response = browser.client.get(path, follow_redirects=False)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000", path


def test_over_plain_http_there_is_no_hsts(ctx: Context) -> None:
    browser = new_panel(ctx)
    assert "Strict-Transport-Security" not in browser.client.get("/panel/sign-in").headers
