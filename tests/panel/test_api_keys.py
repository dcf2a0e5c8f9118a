"""Settings → API keys in the panel: the owner makes a key (shown once), sees its use and
revokes it; a member can do neither; every form checks its CSRF token."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from tests.panel.test_settings import add_member
from tests.support.panel import Panel, new_panel

PAGE = "/panel/settings/api-keys"
KEY = re.compile(r'readonly value="(cm_[a-f0-9]+_[A-Za-z0-9_-]+)" aria-label="The new API key"')


def make(panel: Panel, name: str = "Shop backend", scope: str = "read") -> str:
    response = panel.post(PAGE, {"name": name, "scope": scope}, page=PAGE)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    match = KEY.search(response.text)
    assert match, response.text
    return match[1]


def api(panel: Panel, key: str) -> TestClient:
    return TestClient(panel.client.app, headers={"Authorization": f"Bearer {key}"})


def test_the_owner_makes_a_key_that_is_shown_once(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    settings = panel.client.get("/panel/settings").text
    assert f'href="{PAGE}"' in settings
    assert "No keys yet." in panel.client.get(PAGE).text

    key = make(panel, "Shop backend", "all")
    page = panel.client.get(PAGE).text
    assert key not in page
    assert 'data-testid="api-key"' in page and "Shop backend" in page
    assert "Full access" in page and "never used" in page
    assert api(panel, key).get("/api/v1/balance").status_code == 200
    assert "last used" in panel.client.get(PAGE).text


def test_a_read_only_key_from_the_panel_only_reads(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    key = make(panel, "Dashboard", "read")
    assert "Read only" in panel.client.get(PAGE).text
    client = api(panel, key)
    assert client.get("/api/v1/balance").status_code == 200
    assert client.post("/api/v1/purchases", json={"packages": 1}).status_code == 403


def test_the_owner_revokes_a_key(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    key = make(panel)
    (key_id,) = [k["id"] for k in api(panel, key).get("/api/v1/keys").json()]
    revoked = panel.post(f"{PAGE}/{key_id}/revoke", {}, page=PAGE)
    assert revoked.status_code == 303
    page = panel.client.get(revoked.headers["location"]).text
    assert "The key is revoked; it no longer works." in page
    assert "revoked" in page and f"{PAGE}/{key_id}/revoke" not in page
    assert api(panel, key).get("/api/v1/balance").status_code == 401


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "", "scope": "read"}, "Name the key"),
        ({"name": "x" * 101, "scope": "read"}, "too long"),
        ({"name": "Ops", "scope": "admin"}, "Choose a scope: read (GET requests only) or all."),
    ],
)
def test_bad_input_makes_no_key(
    ctx: Context, panel: Panel, fields: dict[str, str], message: str
) -> None:
    panel.sign_up()
    response = panel.post(PAGE, fields, page=PAGE)
    assert response.status_code == 422
    assert message in response.text
    assert 'data-testid="new-key"' not in response.text
    assert "No keys yet." in response.text


def test_another_accounts_key_cannot_be_revoked(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    other = new_panel(ctx)
    other.sign_up("other@example.com")
    key = make(other)
    (key_id,) = [k["id"] for k in api(other, key).get("/api/v1/keys").json()]
    for target in (str(key_id), "999", "abc", "1" * 30):
        refused = panel.post(f"{PAGE}/{target}/revoke", {}, page=PAGE)
        assert refused.status_code == 404, target
        assert "No such API key." in refused.text
    assert api(other, key).get("/api/v1/balance").status_code == 200


def test_a_member_can_neither_see_nor_manage_keys(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    key = make(panel)
    (key_id,) = [k["id"] for k in api(panel, key).get("/api/v1/keys").json()]
    add_member(ctx)
    member = new_panel(ctx)
    member.sign_in("member@example.com")
    page = member.client.get(PAGE).text
    assert "Only the account's owner can see and manage API keys." in page
    assert (
        "Shop backend" not in page
        and f'href="{PAGE}"' not in member.client.get("/panel/settings").text
    )
    for response in (
        member.post(PAGE, {"name": "mine", "scope": "all"}, page=PAGE),
        member.post(f"{PAGE}/{key_id}/revoke", {}, page=PAGE),
    ):
        assert response.status_code == 403
        assert "Only the account&#39;s owner can manage API keys." in response.text
    assert api(panel, key).get("/api/v1/balance").status_code == 200
    assert len(api(panel, key).get("/api/v1/keys").json()) == 1


def test_the_forms_need_their_csrf_token(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    key = make(panel)
    (key_id,) = [k["id"] for k in api(panel, key).get("/api/v1/keys").json()]
    foreign = new_panel(ctx).csrf()
    for token in (None, "", foreign, "é"):
        data = {} if token is None else {"csrf_token": token}
        for path, fields in {
            PAGE: {"name": "x", "scope": "all"},
            f"{PAGE}/{key_id}/revoke": {},
        }.items():
            response = panel.client.post(path, data=data | fields, follow_redirects=False)
            assert response.status_code == 403, (path, token)
    assert len(api(panel, key).get("/api/v1/keys").json()) == 1
    assert api(panel, key).get("/api/v1/balance").status_code == 200


def test_the_page_needs_a_sign_in(ctx: Context, panel: Panel) -> None:
    response = panel.client.get(PAGE, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/panel/sign-in"
