"""What the public widget and chat endpoints answer a browser, by the page's ``Origin``.

No turn here reaches the model: refusals happen before it is asked (the browser
journeys in ``tests/e2e`` chat for real).
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.widget import texts
from tests.chat.shop import UNAVAILABLE, assert_says_nothing_about_money, holds, open_shop
from tests.support.accounts import add_tokens

SITE = "https://shop.example.com"
ELSEWHERE = "https://copycat.example.net"
FORBIDDEN = {"error": {"code": "forbidden", "message": "This website may not use this assistant."}}
QUESTION = {"message": "When are you open?"}


def widget_url(public_key: str) -> str:
    return f"/api/v1/public/{public_key}/widget"


def chat_url(public_key: str) -> str:
    return f"/api/v1/public/{public_key}/chat"


def test_the_widget_gets_its_settings_on_an_allowed_site(ctx: Context, visitor: TestClient) -> None:
    shop = open_shop(
        ctx,
        train=False,
        allowed_domains=["*.example.com"],
        widget_title="Acme help",
        widget_color="#0F766E",
        widget_position="left",
        welcome_message="Hello there!",
    )

    reply = visitor.get(widget_url(shop.public_key), headers={"Origin": SITE})

    assert reply.status_code == 200
    assert reply.json() == {
        "title": "Acme help",
        "color": "#0F766E",
        "position": "left",
        "welcome_message": "Hello there!",
        "max_message_chars": ctx.settings.chat_max_message_chars,
        "theme": "auto",
        "lang": "en",
        "texts": texts.ENGLISH,
    }
    assert reply.headers["access-control-allow-origin"] == SITE
    assert reply.headers["vary"] == "Origin"
    assert reply.headers["cache-control"] == "no-store"


def test_the_widget_title_falls_back_to_the_assistants_name(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, train=False, allowed_domains=["shop.example.com"])

    reply = visitor.get(widget_url(shop.public_key), headers={"Origin": SITE})

    assert reply.json()["title"] == "Help Center"


def test_no_widget_for_another_site_an_inactive_or_an_unknown_assistant(
    ctx: Context, visitor: TestClient
) -> None:
    """Another site: 403; out of tokens or no such key: the same empty 404, so a page
    learns nothing about the customer's balance."""
    shop = open_shop(ctx, train=False, tokens=0, allowed_domains=["shop.example.com"])

    elsewhere = visitor.get(widget_url(shop.public_key), headers={"Origin": ELSEWHERE})
    inactive = visitor.get(widget_url(shop.public_key), headers={"Origin": SITE})
    unknown = visitor.get(widget_url("pk_nosuchassistant"), headers={"Origin": SITE})

    assert (elsewhere.status_code, elsewhere.content) == (403, b"")
    assert "access-control-allow-origin" not in elsewhere.headers
    assert (inactive.status_code, inactive.content) == (404, b"")
    assert inactive.headers["cache-control"] == "no-store"
    assert (unknown.status_code, unknown.content) == (404, b"")
    assert "access-control-allow-origin" not in unknown.headers

    add_tokens(ctx, shop.account_id, 100)
    assert visitor.get(widget_url(shop.public_key), headers={"Origin": SITE}).status_code == 200


def test_an_assistant_without_allowed_domains_runs_on_no_other_site(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, train=False)

    assert visitor.get(widget_url(shop.public_key), headers={"Origin": SITE}).status_code == 403
    # Chatmeter's own pages (a preview in the control panel) and callers that are
    # not browsers on another site send no foreign Origin.
    own = visitor.get(widget_url(shop.public_key), headers={"Origin": "http://testserver"})
    assert own.status_code == 200
    assert visitor.get(widget_url(shop.public_key)).status_code == 200


def test_a_chat_from_another_site_is_refused_before_anything_is_reserved(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, train=False, allowed_domains=["shop.example.com"])

    reply = visitor.post(chat_url(shop.public_key), json=QUESTION, headers={"Origin": ELSEWHERE})

    assert reply.status_code == 403
    assert reply.json() == FORBIDDEN
    assert "access-control-allow-origin" not in reply.headers
    assert_says_nothing_about_money(reply.text)
    assert holds(ctx, shop.account_id) == []


@pytest.mark.parametrize("stream", [False, True])
def test_an_allowed_site_can_read_the_unavailable_answer(
    ctx: Context, visitor: TestClient, stream: bool
) -> None:
    shop = open_shop(ctx, train=False, tokens=0, allowed_domains=["shop.example.com"])
    headers = {"Origin": SITE} | ({"Accept": "text/event-stream"} if stream else {})

    reply = visitor.post(chat_url(shop.public_key), json=QUESTION, headers=headers)

    assert reply.status_code == 503
    assert reply.json() == UNAVAILABLE
    assert reply.headers["access-control-allow-origin"] == SITE
    assert reply.headers["vary"] == "Origin"


def test_an_unknown_assistant_is_unavailable_whatever_the_origin(visitor: TestClient) -> None:
    reply = visitor.post(chat_url("pk_nosuchassistant"), json=QUESTION, headers={"Origin": SITE})

    assert reply.status_code == 503
    assert reply.json() == UNAVAILABLE


def test_the_preflight_is_answered_for_allowed_sites_only(
    ctx: Context, visitor: TestClient
) -> None:
    shop = open_shop(ctx, train=False, allowed_domains=["shop.example.com"])
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }

    allowed = visitor.options(chat_url(shop.public_key), headers=ask | {"Origin": SITE})
    refused = visitor.options(chat_url(shop.public_key), headers=ask | {"Origin": ELSEWHERE})
    unknown = visitor.options(chat_url("pk_nosuchassistant"), headers=ask | {"Origin": SITE})

    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert allowed.headers["access-control-allow-headers"] == "Content-Type, Accept"
    assert allowed.headers["vary"] == "Origin"
    for reply in (refused, unknown):
        assert reply.status_code == 403
        assert "access-control-allow-origin" not in reply.headers


def test_the_script_is_served_as_cacheable_javascript(visitor: TestClient) -> None:
    reply = visitor.get("/widget.js")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/javascript; charset=utf-8"
    assert reply.headers["cache-control"].startswith("public, max-age=")
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "data-assistant" in reply.text
    assert "ChatmeterMarkdown.render(" in reply.text  # the renderer travels in the same script
    assert "window.ChatmeterMarkdown =" not in reply.text  # ... and adds no global to the page
    # Text from the server becomes text: nothing in the script parses markup or code.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacent|document\.write|eval\(", reply.text)

    again = visitor.get("/widget.js", headers={"If-None-Match": reply.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_the_markdown_renderer_is_served_alone_for_chatmeters_own_pages(
    visitor: TestClient,
) -> None:
    reply = visitor.get("/widget/markdown.js")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/javascript; charset=utf-8"
    assert reply.headers["cache-control"] == visitor.get("/widget.js").headers["cache-control"]
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "window.ChatmeterMarkdown = ChatmeterMarkdown" in reply.text
    assert "data-assistant" not in reply.text  # the renderer, not the widget
    assert not re.search(r"innerHTML|outerHTML|insertAdjacent|document\.write|eval\(", reply.text)
    assert reply.headers["etag"] != visitor.get("/widget.js").headers["etag"]

    again = visitor.get("/widget/markdown.js", headers={"If-None-Match": reply.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
