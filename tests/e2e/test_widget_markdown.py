"""The answers' Markdown renderer (``widget/markdown.js``) in the real browser: what it
allows becomes the right elements, and nothing else ever becomes an element, an
attribute or a link; in the widget, an answer is drawn with it.

It is loaded the way Chatmeter's own pages load it, from ``/widget/markdown.js``, as
``window.ChatmeterMarkdown``; the widget runs the same code inside its one script.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from chatmeter.answers import corrections
from chatmeter.context import Context
from tests.chat.shop import open_shop
from tests.e2e.driver import ANSWER_TIMEOUT, HOST, Widget, load, page_with_widget, train
from tests.e2e.pages import SHOP
from tests.e2e.test_widget_chat import DOCUMENTS
from tests.support.browser import Visit
from tests.support.live import LiveServer
from tests.support.website import Website

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# Elements the renderer may create, and the attributes each may carry.
ALLOWED = {
    "P": set(),
    "BR": set(),
    "STRONG": set(),
    "EM": set(),
    "CODE": set(),
    "PRE": set(),
    "UL": set(),
    "OL": {"start"},
    "LI": set(),
    "A": {"href", "rel", "target"},
}
LINK_PROTOCOLS = ("http:", "https:", "mailto:")

CONSTRUCTS = [
    ("Hello", "<p>Hello</p>"),
    ("one\ntwo\n\nthree", "<p>one<br>two</p><p>three</p>"),
    ("**bold** and __also__", "<p><strong>bold</strong> and <strong>also</strong></p>"),
    ("*it* and _it_", "<p><em>it</em> and <em>it</em></p>"),
    ("**bold *and italic***", "<p><strong>bold <em>and italic</em></strong></p>"),
    ("snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"),
    ("run `pip install`", "<p>run <code>pip install</code></p>"),
    ("```\n<b>x</b>\n  **y**\n```", "<pre><code>&lt;b&gt;x&lt;/b&gt;\n  **y**</code></pre>"),
    (
        "- one\n- **two**\n* three",
        "<ul><li>one</li><li><strong>two</strong></li><li>three</li></ul>",
    ),
    ("1. first\n2. second", "<ol><li>first</li><li>second</li></ol>"),
    ("3. third\n\n4. fourth", '<ol start="3"><li>third</li><li>fourth</li></ol>'),
    ("Intro:\n\n- a\n- b\n\nAfter.", "<p>Intro:</p><ul><li>a</li><li>b</li></ul><p>After.</p>"),
    ("## Opening hours\nDaily.", "<p><strong>Opening hours</strong></p><p>Daily.</p>"),
    ("#hashtag", "<p>#hashtag</p>"),
    (
        "[our shop](https://shop.example.com/a?b=1&c=2)",
        '<p><a href="https://shop.example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow"'
        ' target="_blank">our shop</a></p>',
    ),
    (
        "Write to [us](mailto:help@example.com).",
        '<p>Write to <a href="mailto:help@example.com" rel="noopener noreferrer nofollow"'
        ' target="_blank">us</a>.</p>',
    ),
    (
        "See https://example.com/faq.",
        '<p>See <a href="https://example.com/faq" rel="noopener noreferrer nofollow"'
        ' target="_blank">https://example.com/faq</a>.</p>',
    ),
    ("\\*not italic\\*", "<p>*not italic*</p>"),
    ("**unclosed bold", "<p>**unclosed bold</p>"),
    ("", ""),
]

# Each must come out as text, or as allowed elements with nothing dangerous in them.
INJECTIONS = [
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=window.__pwned=2>",
    '<a href="javascript:window.__pwned=3">click</a>',
    "[click](javascript:window.__pwned=4)",
    "[click](JaVaScRiPt:window.__pwned=5)",
    "[click]( javascript:window.__pwned=6 )",
    "[click](java\tscript:window.__pwned=7)",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox)",
    "[click](/relative/path)",
    "[click](//evil.example.com)",
    '[x](https://ok.example.com" onclick="window.__pwned=8)',
    "[**<img src=x onerror=window.__pwned=9>**](https://example.com)",
    "&lt;script&gt;window.__pwned=10&lt;/script&gt; &amp; &#60;img src=x onerror=1&#62;",
    "[click](javascript&#58;window.__pwned=11)",
    "**<b onmouseover=window.__pwned=12>bold</b>**",
    "*<i>nested *<em>deep</em>* markup</i>*",
    "**unclosed <svg onload=window.__pwned=13>",
    "```\n<iframe src=javascript:window.__pwned=14></iframe>\n```",
    "`<style>*{display:none}</style>`",
    "- <form action=https://evil.example.com><input name=x></form>\n- two",
    "# <h1 onclick=window.__pwned=15>title</h1>",
    "<svg><foreignObject><img src=x onerror=window.__pwned=16></foreignObject></svg>",
    "<math><mi xlink:href=javascript:window.__pwned=17>x</mi></math>",
    "[a](https://example.com)[b](javascript:window.__pwned=18)",
    "https://example.com/<img src=x onerror=window.__pwned=19>",
    "javascript:window.__pwned=20",
    "mailto:x@example.com?body=<script>window.__pwned=21</script>",
    "***" * 200 + "_" * 200 + "`" * 50,
    "\u0000<script>\u2028window.__pwned=22</script>",
]

DRAW = """([text, id]) => {
  const box = document.createElement("div");
  box.id = id;
  box.append(window.ChatmeterMarkdown.render(text, document));
  document.body.append(box);  // in the page, where an onerror would run
  return box.innerHTML;
}"""

INSPECT = """(id) => [...document.getElementById(id).querySelectorAll("*")].map((node) => ({
  tag: node.tagName,
  attributes: [...node.attributes].map((a) => [a.name, a.value]),
}))"""


@pytest.fixture
def renderer(live: LiveServer, website: Website, browser: Browser) -> Iterator[Page]:
    """A page that loads the renderer as Chatmeter's own pages do."""
    url = website.publish(
        "/markdown.html",
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Markdown</title>'
        f'<script src="{live.url}/widget/markdown.js"></script></head><body></body></html>',
    )
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("() => typeof window.ChatmeterMarkdown === 'object'")
    yield page
    context.close()


def draw(page: Page, text: str, box: str) -> str:
    return str(page.evaluate(DRAW, [text, box]))


def elements(page: Page, box: str) -> list[dict[str, Any]]:
    return list(page.evaluate(INSPECT, box))


def test_the_allowed_constructs_become_the_right_elements(renderer: Page) -> None:
    for i, (text, expected) in enumerate(CONSTRUCTS):
        assert draw(renderer, text, f"construct-{i}") == expected, text


def test_nothing_outside_the_allow_list_is_ever_created(renderer: Page) -> None:
    for i, text in enumerate(INJECTIONS):
        draw(renderer, text, f"injection-{i}")
        for node in elements(renderer, f"injection-{i}"):
            assert node["tag"] in ALLOWED, (text, node)
            for name, value in node["attributes"]:
                assert name in ALLOWED[node["tag"]], (text, node)
                assert not name.lower().startswith("on"), (text, node)
                if name == "href":
                    assert value.startswith(LINK_PROTOCOLS), (text, node)
                    assert "<" not in value and '"' not in value, (text, node)

    # Markup stayed characters on the page, and none of it ran.
    page_text = renderer.evaluate("() => document.body.textContent")
    assert "<script>window.__pwned = 1</script>" in page_text
    assert "<img src=x onerror=window.__pwned=2>" in page_text
    assert "&lt;script&gt;" in page_text  # an entity is shown as typed, not decoded
    assert renderer.evaluate("() => window.__pwned") is None
    assert renderer.locator("script, img, iframe, svg, math, form, style, input").count() == 1
    # (the one is the page's own <script src=".../markdown.js">)


def test_only_http_https_and_mailto_links_are_links(renderer: Page) -> None:
    draw(
        renderer,
        "[a](https://example.com) [b](http://example.com) [c](mailto:a@example.com) "
        "[d](javascript:alert(1)) [e](data:text/plain,hi) [f](ftp://example.com) [g](/x)",
        "links",
    )

    links = renderer.locator("#links a")
    assert [links.nth(i).text_content() for i in range(links.count())] == ["a", "b", "c"]
    for i in range(links.count()):
        assert links.nth(i).get_attribute("rel") == "noopener noreferrer nofollow"
        assert links.nth(i).get_attribute("target") == "_blank"
    shown = renderer.locator("#links").text_content() or ""
    assert "[d](javascript:alert(1))" in shown and "[g](/x)" in shown


CORRECTION_QUESTION = "Do you sell gift cards?"
CORRECTION = (
    "**Yes.** Gift cards come in:\n\n- 20 pounds\n- 50 pounds\n\n"
    "Buy one at [our shop](https://shop.example.com/gifts). <img src=x onerror=window.__pwned=1>"
)


def test_the_widget_shows_an_answer_in_markdown_and_keeps_it(
    ctx: Context, live: LiveServer, website: Website, visit: Visit
) -> None:
    """The customer's own answer (a correction, sent as written) in Markdown: drawn as
    the allowed elements as it streams in, and again from the kept conversation."""
    shop = open_shop(ctx, train=False, allowed_domains=[website.domain])
    train(ctx, shop, DOCUMENTS)
    corrections.save(
        ctx,
        account_id=shop.account_id,
        assistant_id=shop.assistant_id,
        question=CORRECTION_QUESTION,
        answer=CORRECTION,
    )
    url = website.publish("/gifts.html", page_with_widget(SHOP, api=live.url, shop=shop))
    page = visit.page
    widget = Widget(page)
    load(page, url)
    widget.open()
    widget.ask(CORRECTION_QUESTION)

    answer = page.locator(f"{HOST} .bubble.md")
    for _ in range(2):
        expect(answer.locator("li")).to_have_text(
            ["20 pounds", "50 pounds"], timeout=ANSWER_TIMEOUT
        )
        expect(answer.locator("strong")).to_have_text("Yes.")
        link = answer.get_by_role("link", name="our shop")
        expect(link).to_have_attribute("href", "https://shop.example.com/gifts")
        expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
        expect(link).to_have_attribute("target", "_blank")
        expect(answer).to_contain_text("<img src=x onerror=window.__pwned=1>")
        assert widget.count("img, script") == 0
        assert page.evaluate("() => window.__pwned") is None
        page.reload()  # the same answer, drawn from the kept conversation
        widget.open()
