"""The Embed tab: a warning when the snippet points at another host than the panel's, and
"Test on a blank page", a page of the panel with nothing but the snippet."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.panel.pages.assistants import host_of
from chatmeter.web.app import create_app
from tests.support.context import derived
from tests.support.panel import Panel, new_panel

WARNING = 'data-testid="host-warning"'


@pytest.fixture
def here(ctx: Context) -> Iterator[Panel]:
    """The panel at http://127.0.0.1, the address its snippet names too."""
    same = derived(ctx, base_url="http://127.0.0.1")
    with TestClient(create_app(same), base_url="http://127.0.0.1") as client:
        yield Panel(client)


def create(panel: Panel, **fields: str) -> int:
    response = panel.post("/panel/assistants/new", {"name": "Front desk"} | fields)
    assert response.status_code == 303, response.text
    match = re.search(r"/panel/assistants/(\d+)/", response.headers["location"])
    assert match
    return int(match[1])


def public_key(panel: Panel, assistant_id: int) -> str:
    page = panel.client.get(f"/panel/assistants/{assistant_id}/embed").text
    match = re.search(r'data-testid="public-key">([^<]+)<', page)
    assert match
    return match[1]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://127.0.0.1:80/", "127.0.0.1"),
        ("https://Chat.Example.com", "chat.example.com"),
        ("https://chat.example.com:443/", "chat.example.com"),
        ("https://chat.example.com:8443", "chat.example.com:8443"),
        ("http://[::1]:8011/", "[::1]:8011"),
    ],
)
def test_a_host_is_written_as_people_write_it(url: str, host: str) -> None:
    assert host_of(url) == host


def test_no_warning_when_the_panel_is_where_the_snippet_points(here: Panel) -> None:
    here.sign_up()
    bot = create(here)
    page = here.client.get(f"/panel/assistants/{bot}/embed").text
    assert WARNING not in page
    assert f'href="/panel/assistants/{bot}/embed/preview" target="_blank"' in page


def test_a_warning_when_the_snippet_loads_from_another_host(ctx: Context) -> None:
    elsewhere = derived(ctx, base_url="http://127.0.0.1:8000")
    with TestClient(create_app(elsewhere), base_url="http://127.0.0.1:8011") as client:
        panel = Panel(client)
        panel.sign_up()
        bot = create(panel)
        page = html.unescape(client.get(f"/panel/assistants/{bot}/embed").text)
    warning = page.split(WARNING)[1].split("</div>")[0]
    assert 'role="alert"' in page.split(WARNING)[0][-80:]
    assert (
        "This snippet loads the chat from 127.0.0.1:8000, "
        "but you are using Chatmeter at 127.0.0.1:8011."
    ) in warning
    assert "CHATMETER_BASE_URL" in warning


def test_behind_a_proxy_that_ends_tls_only_the_host_counts(ctx: Context) -> None:
    public = derived(ctx, base_url="https://chat.example.com")
    with TestClient(create_app(public), base_url="https://chat.example.com") as client:
        panel = Panel(client)
        panel.sign_up()
        bot = create(panel)
        # The browser speaks https to the proxy, the proxy http to the app.
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        page = client.get(
            f"http://chat.example.com/panel/assistants/{bot}/embed", headers={"Cookie": cookies}
        )
    assert page.status_code == 200 and 'data-testid="public-key"' in page.text
    assert WARNING not in page.text


def test_the_blank_page_holds_the_snippet_and_may_load_it(here: Panel) -> None:
    here.sign_up()
    bot = create(here)
    key = public_key(here, bot)
    response = here.client.get(f"/panel/assistants/{bot}/embed/preview")
    assert response.status_code == 200
    scripts = re.findall(r"<script[^>]*>", response.text)
    assert scripts == [f'<script src="http://127.0.0.1/widget.js" data-assistant="{key}" async>']
    policy = response.headers["content-security-policy"]
    assert "script-src 'self' http://127.0.0.1;" in policy
    assert "connect-src 'self' http://127.0.0.1;" in policy
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert response.headers["cache-control"] == "no-store"


def test_the_blank_page_allows_the_snippets_host_when_it_is_another(ctx: Context) -> None:
    elsewhere = derived(ctx, base_url="https://chat.example.com")
    with TestClient(create_app(elsewhere), base_url="https://127.0.0.1:8011") as client:
        panel = Panel(client)
        panel.sign_up()
        bot = create(panel)
        response = client.get(f"/panel/assistants/{bot}/embed/preview")
    assert '<script src="https://chat.example.com/widget.js"' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self' https://chat.example.com;" in policy
    assert "connect-src 'self' https://chat.example.com;" in policy


def test_the_blank_page_of_another_accounts_assistant_is_not_found(
    ctx: Context, here: Panel
) -> None:
    here.sign_up("bob@example.com")
    bobs = create(here, name="Bob's secret bot")
    key = public_key(here, bobs)
    alice = new_panel(ctx)
    alice.sign_up("alice@example.com")
    for target in (str(bobs), "999999", "abc"):
        response = alice.client.get(f"/panel/assistants/{target}/embed/preview")
        assert response.status_code == 404, target
        assert key not in response.text and "Bob&#39;s secret" not in response.text
    signed_out = new_panel(ctx).client.get(
        f"/panel/assistants/{bobs}/embed/preview", follow_redirects=False
    )
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/panel/sign-in")


def test_only_the_apis_own_origin_is_let_through_for_the_preview(here: Panel) -> None:
    """The blank page is on Chatmeter's own origin; an assistant with no allowed website
    still refuses every other origin, even one on the same host."""
    here.sign_up()
    bot = create(here)  # no allowed websites
    url = f"/api/v1/public/{public_key(here, bot)}/widget"
    own = here.client.get(url, headers={"Origin": "http://127.0.0.1"})
    assert own.status_code != 403
    assert own.headers["access-control-allow-origin"] == "http://127.0.0.1"
    for origin in (
        "http://127.0.0.1:8011",  # the same host, another port
        "https://127.0.0.1",  # another scheme
        "http://127.0.0.1.evil.example",
        "http://evil.example",
        "null",
    ):
        refused = here.client.get(url, headers={"Origin": origin})
        assert refused.status_code == 403, origin
        assert "access-control-allow-origin" not in refused.headers
