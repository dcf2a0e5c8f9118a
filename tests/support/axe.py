"""axe-core, vendored in ``tests/vendor/axe-core``, run on a page: what it finds serious.

``serious(page)`` injects axe into the page (and into open shadow roots, which axe
reads itself) and returns the violations of impact "serious" or "critical", each as
``rule: target (summary)`` so that a failing test says what to fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE = Path(__file__).parents[1] / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
# WCAG 2.0, 2.1 and 2.2 A and AA, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def results(page: Page, *, context: Any = None) -> dict[str, Any]:
    """axe's full results for the page (or ``context``: a selector, or axe's include/exclude)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated, not added as a <script>: the panel's Content-Security-Policy would refuse it.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    found: dict[str, Any] = page.evaluate(
        """async ([context, tags]) => await window.axe.run(context || document,
            { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] })""",
        [context, TAGS],
    )
    return found


def serious(page: Page, *, context: Any = None) -> list[str]:
    """The serious and critical violations, one line per element."""
    lines = []
    for violation in results(page, context=context)["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        for node in violation["nodes"]:
            target = " ".join(str(t) for t in node["target"])
            lines.append(f"{violation['id']}: {target} ({node['failureSummary'][:200]})")
    return lines
