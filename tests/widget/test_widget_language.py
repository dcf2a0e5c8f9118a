"""The widget's words: in the visitor's language, or the customer's own, and its theme.

The widget sends the browser's languages as ``?lang=`` (``navigator.languages``,
comma-separated); without it the ``Accept-Language`` header decides. Whatever a
visitor sends, the settings come back: odd languages get English, never an error.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatmeter.context import Context
from chatmeter.widget import texts
from tests.chat.shop import open_shop

SITE = "https://shop.example.com"


def settings(visitor: TestClient, public_key: str, **headers: str) -> dict[str, object]:
    reply = visitor.get(f"/api/v1/public/{public_key}/widget", headers={"Origin": SITE} | headers)
    assert reply.status_code == 200
    body: dict[str, object] = reply.json()
    return body


def with_lang(visitor: TestClient, public_key: str, lang: str, **headers: str) -> dict[str, object]:
    reply = visitor.get(
        f"/api/v1/public/{public_key}/widget",
        params={"lang": lang},
        headers={"Origin": SITE} | headers,
    )
    assert reply.status_code == 200
    body: dict[str, object] = reply.json()
    return body


@pytest.fixture
def public_key(ctx: Context) -> str:
    return open_shop(ctx, train=False, allowed_domains=["shop.example.com"]).public_key


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("fr-FR,fr,en-US,en", "fr"),
        ("de", "de"),
        ("es-419", "es"),
        ("nl-BE,fr", "nl"),
        ("pt-BR,it,de-CH", "de"),  # the first language the widget ships
        ("EN-gb", "en"),
    ],
)
def test_the_texts_follow_the_browsers_languages(
    visitor: TestClient, public_key: str, lang: str, expected: str
) -> None:
    shown = with_lang(visitor, public_key, lang)

    assert shown["lang"] == expected
    assert shown["texts"] == texts.TRANSLATIONS[expected]


def test_the_lang_parameter_wins_over_accept_language(visitor: TestClient, public_key: str) -> None:
    shown = with_lang(visitor, public_key, "de-DE,de", **{"Accept-Language": "fr-FR,fr;q=0.9"})

    assert shown["lang"] == "de"


def test_without_lang_the_accept_language_header_decides(
    visitor: TestClient, public_key: str
) -> None:
    french = settings(visitor, public_key, **{"Accept-Language": "it;q=1, fr-CA;q=0.8, en;q=0.5"})
    refused = settings(visitor, public_key, **{"Accept-Language": "fr;q=0, nl;q=0.3"})

    assert (french["lang"], french["texts"]) == ("fr", texts.TRANSLATIONS["fr"])
    assert refused["lang"] == "nl"  # q=0 means "not French"


@pytest.mark.parametrize(
    "lang",
    [
        "",
        "xx,yy-ZZ",
        "<script>alert(1)</script>",
        ",,,;;;q=é",
        "fr," + "x" * 300,  # longer than any browser's list: not read at all
    ],
)
def test_an_odd_or_oversized_lang_gets_english_not_an_error(
    visitor: TestClient, public_key: str, lang: str
) -> None:
    shown = with_lang(visitor, public_key, lang, **{"Accept-Language": "de"})

    assert (shown["lang"], shown["texts"]) == ("en", texts.ENGLISH)


def test_the_customers_own_wording_shows_in_every_language(
    ctx: Context, visitor: TestClient
) -> None:
    mine = {"subtitle": "We answer in seconds", "placeholder": "Your question…"}
    shop = open_shop(
        ctx,
        train=False,
        allowed_domains=["shop.example.com"],
        widget_texts=mine,
        widget_theme="dark",
    )

    french = with_lang(visitor, shop.public_key, "fr")
    english = with_lang(visitor, shop.public_key, "en")

    assert french["texts"] == texts.TRANSLATIONS["fr"] | mine
    assert english["texts"] == texts.ENGLISH | mine
    assert french["theme"] == english["theme"] == "dark"


def test_every_language_has_every_text() -> None:
    for language, words in texts.TRANSLATIONS.items():
        assert tuple(words) == texts.KEYS, language
        assert all(text.strip() for text in words.values()), language
