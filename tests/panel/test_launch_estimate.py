"""The launch estimate on an assistant's Embed tab, before it goes live: the same figures
as ``GET /api/v1/assistants/{id}/estimate``, a readable message for a bad number, and
nothing of another account's assistant."""

from __future__ import annotations

import html
import re

import pytest

from chatmeter.context import Context
from tests.panel.test_embed_page import create
from tests.support.panel import Panel, new_panel


def shown(page: str, label: str) -> str:
    match = re.search(rf"<span>{re.escape(label)}</span><strong>([^<]+)</strong>", page)
    assert match, label
    return html.unescape(match[1])


def test_the_embed_tab_estimates_a_month_from_the_settings(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant = create(panel)
    page = panel.client.get(f"/panel/assistants/{assistant}/embed?conversations_per_day=40")
    assert page.status_code == 200
    text = page.text
    assert 'data-testid="estimate-result"' in text
    per_conversation = int(shown(text, "Per conversation").split()[0].replace(",", ""))
    month = int(shown(text, "Tokens a month").replace(",", ""))
    packages = int(shown(text, "Packages of 5,000"))
    assert month == per_conversation * 40 * 30  # the sum shown under it, by hand
    assert packages == -(-month // 5000)
    assert "No conversations yet: estimated from its settings" in html.unescape(text)


@pytest.mark.parametrize("typed", ["0", "-3", "lots", "1000001", "1.5"])
def test_a_bad_number_gets_a_message(ctx: Context, panel: Panel, typed: str) -> None:
    panel.sign_up()
    assistant = create(panel)
    page = panel.client.get(
        f"/panel/assistants/{assistant}/embed", params={"conversations_per_day": typed}
    )
    assert page.status_code == 422
    assert "a whole number from 1 to 1,000,000" in page.text
    assert 'data-testid="estimate-result"' not in page.text


def test_another_accounts_assistant_is_not_found(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assistant = create(panel)
    stranger = new_panel(ctx)
    with stranger.client:
        stranger.sign_up("stranger@example.com")
        page = stranger.client.get(f"/panel/assistants/{assistant}/embed?conversations_per_day=5")
    assert page.status_code == 404
    assert "estimate-result" not in page.text
