"""Every panel page forbids inline scripts and framing; the templates keep to that."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatmeter.panel import rendering
from tests.support.panel import Panel

TEMPLATES = Path(rendering.HERE / "templates")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")
EVENT_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)


@pytest.mark.parametrize(
    "path", ["/panel/sign-in", "/panel/sign-up", "/panel/dashboard", "/panel/usage"]
)
def test_pages_send_a_content_security_policy(panel: Panel, path: str) -> None:
    panel.sign_up()
    response = panel.client.get(path)
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_no_template_has_an_inline_script_or_event_handler() -> None:
    offenders = []
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text()
        if INLINE_SCRIPT.search(text) or EVENT_HANDLER.search(text):
            offenders.append(template.name)
    assert offenders == []
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")  # the check itself works
    assert not INLINE_SCRIPT.search('<script src="/panel/static/panel.js" defer></script>')
    assert EVENT_HANDLER.search('<button onclick="x()">')
