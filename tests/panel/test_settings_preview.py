"""Assistant settings in plain words: the labels and their help, the widget's theme and
texts saved through the same form, and the preview's first drawing (its colours chosen
by contrast)."""

from __future__ import annotations

import html
import itertools
import json
import re

import pytest
from sqlalchemy import select

from chatmeter.assistants.models import Assistant
from chatmeter.context import Context
from chatmeter.panel.assistant_forms import TEXT_LABELS, form_of
from chatmeter.panel.contrast import BLACK, WHITE, contrast_ratio, text_on
from chatmeter.widget import texts
from tests.support.panel import Panel


def create(panel: Panel) -> int:
    response = panel.post("/panel/assistants/new", {"name": "Front desk"})
    assert response.status_code == 303, response.text
    match = re.search(r"/panel/assistants/(\d+)/", response.headers["location"])
    assert match
    return int(match[1])


def stored(ctx: Context, assistant_id: int) -> Assistant:
    with ctx.db.read() as session:
        assistant = session.scalar(select(Assistant).where(Assistant.id == assistant_id))
        assert assistant is not None
        session.expunge(assistant)
        return assistant


def full_form(panel: Panel, assistant_id: int) -> dict[str, str]:
    """Every field of the settings page as it is filled in now."""
    page = panel.client.get(f"/panel/assistants/{assistant_id}").text
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input class="input[^"]*" id="f-\w+" name="(\w+)" type="text" value="([^"]*)"', page
        )
    }
    for name, value in re.findall(
        r'<textarea class="input" id="f-\w+" name="(\w+)"[^>]*>([^<]*)</textarea>', page
    ):
        fields[name] = html.unescape(value)
    fields["model"] = "local"
    for name in ("widget_position", "widget_theme", "answer_mode", "show_sources"):
        checked = re.search(rf'name="{name}" value="(\w+)" checked', page)
        assert checked, name
        fields[name] = checked[1]
    return fields


def save(panel: Panel, assistant_id: int, **changes: str):  # type: ignore[no-untyped-def]
    path = f"/panel/assistants/{assistant_id}"
    return panel.post(path, full_form(panel, assistant_id) | changes, page=path)


def test_the_settings_speak_plainly(panel: Panel) -> None:
    panel.sign_up()
    page = panel.client.get(f"/panel/assistants/{create(panel)}").text
    for label, help_words in [
        ("Longest answer", "Longer answers may cost more"),
        ("Creativity", "No effect on cost"),
        ("Sources read per answer", "More finds more, and costs more"),
        ("Reading per answer", "Less is cheaper"),
    ]:
        assert f">{label}</label>" in page, label
        assert help_words in page, help_words
    for jargon in ("Response cap", "Temperature", ">Passages<", "Context budget"):
        assert jargon not in page, jargon


def test_every_widget_text_has_a_field_with_its_english_default(panel: Panel) -> None:
    assert list(TEXT_LABELS) == list(texts.KEYS)
    panel.sign_up()
    page = html.unescape(panel.client.get(f"/panel/assistants/{create(panel)}").text)
    for key, default in texts.ENGLISH.items():
        assert f'name="text_{key}" type="text" value="" placeholder="{default}"' in page, key
    visible, collapsed = page.split('<details class="all-texts"', 1)
    assert 'name="text_subtitle"' in visible and 'name="text_placeholder"' in visible
    assert 'name="text_powered_by"' in collapsed and 'name="text_subtitle"' not in collapsed


def test_the_theme_and_texts_are_saved_through_the_form(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    bot = create(panel)
    response = save(
        panel,
        bot,
        widget_theme="dark",
        text_subtitle="  We answer in seconds  ",
        text_placeholder="Your question…",
        text_send="",
    )
    assert response.status_code == 303, response.text
    saved = stored(ctx, bot)
    assert saved.widget_theme == "dark"
    assert json.loads(saved.widget_texts) == {
        "subtitle": "We answer in seconds",
        "placeholder": "Your question…",
    }
    page = html.unescape(panel.client.get(f"/panel/assistants/{bot}").text)
    assert 'name="widget_theme" value="dark" checked' in page
    assert 'name="text_subtitle" type="text" value="We answer in seconds"' in page
    # Emptied again: the default shows once more.
    assert save(panel, bot, text_subtitle="", text_placeholder="").status_code == 303
    assert json.loads(stored(ctx, bot).widget_texts) == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("text_thanks", "x" * 201, "This text is too long (at most 200 characters)."),
        ("text_subtitle", "x" * 201, "This text is too long (at most 200 characters)."),
        ("widget_theme", "sepia", "The theme must be 'auto', 'light' or 'dark'."),
        ("max_tokens", "ten", "The longest answer must be a whole number from 16 to 2,048."),
        ("temperature", "hot", "The creativity must be a number from 0 to 2."),
        ("passages", "0", "The sources read per answer must be a whole number from 1 to 10."),
        ("context_budget", "9", "The reading per answer must be a whole number from 50 to 8,000."),
    ],
)
def test_a_bad_value_is_refused_beside_its_field_and_changes_nothing(
    ctx: Context, panel: Panel, field: str, value: str, message: str
) -> None:
    panel.sign_up()
    bot = create(panel)
    before = stored(ctx, bot)
    response = save(panel, bot, text_placeholder="Kept as typed", **{field: value})
    assert response.status_code == 422
    page = html.unescape(response.text)
    assert f'<p class="field-error" id="e-{field}">{message}</p>' in page or (
        field == "widget_theme" and message in page
    )
    assert 'name="text_placeholder" type="text" value="Kept as typed"' in page
    if field == "text_thanks":  # in the collapsed section, which opens to show it
        assert '<details class="all-texts" open>' in page
    after = stored(ctx, bot)
    assert (after.widget_texts, after.widget_theme, after.max_tokens) == (
        before.widget_texts,
        before.widget_theme,
        before.max_tokens,
    )


def test_the_preview_first_draws_the_saved_settings_as_text(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    bot = create(panel)
    assert (
        save(
            panel,
            bot,
            widget_title="<b>Northwind</b>",
            widget_color="#facc15",
            widget_theme="light",
            welcome_message="Hello!",
        ).status_code
        == 303
    )
    page = panel.client.get(f"/panel/assistants/{bot}").text
    preview = page.split('data-testid="preview"')[1].split("</aside>")[0]
    assert "<b>Northwind</b>" not in preview
    assert "data-preview-title>&lt;b&gt;Northwind&lt;/b&gt;</span>" in preview
    assert f"data-preview-subtitle>{texts.ENGLISH['subtitle']}</span>" in preview
    assert f"data-preview-placeholder>{texts.ENGLISH['placeholder']}</span>" in preview
    assert "data-preview-welcome>Hello!</p>" in preview
    assert 'data-theme="light"' in preview
    assert f"--wp-brand: #facc15; --wp-on-brand: {BLACK}" in preview  # yellow: black text
    assert '<script src="/panel/static/settings-preview.js" defer></script>' in page


@pytest.mark.parametrize(
    ("colour", "ink"),
    [
        ("#facc15", BLACK),  # yellow
        ("#ffffff", BLACK),
        ("#777777", BLACK),  # mid grey: #111827 would be only 3.98:1
        ("#000000", WHITE),
        ("#0f766e", WHITE),  # the panel's teal
        ("#2563eb", WHITE),  # the default blue
        ("#22c55e", BLACK),  # a light green
    ],
)
def test_the_text_on_the_brand_colour_is_chosen_by_contrast(colour: str, ink: str) -> None:
    assert text_on(colour) == ink


def test_the_chosen_text_colour_is_never_the_weaker_one() -> None:
    for red, green, blue in itertools.product(range(0, 256, 17), repeat=3):
        colour = f"#{red:02x}{green:02x}{blue:02x}"
        other = BLACK if text_on(colour) == WHITE else WHITE
        assert contrast_ratio(colour, text_on(colour)) >= contrast_ratio(colour, other), colour


def test_a_new_assistants_form_has_empty_texts() -> None:
    form = form_of(None)
    assert all(form[f"text_{key}"] == "" for key in texts.KEYS)
    assert form["widget_theme"] == "auto" and "widget_texts" not in form
