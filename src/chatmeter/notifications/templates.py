"""Subject, plain text and HTML of every email, rendered from the figures in the outbox.

Each kind has ``emails/{kind}.txt`` (which also holds the ``subject`` block) and
``emails/{kind}.html``. Undefined figures are errors (``jinja2.UndefinedError``):
an email with a blank where a number should be is worse than a retried one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Undefined, select_autoescape

from chatmeter.formatting import month_name, plural, thousands, utc_time

EMAILS_DIR = Path(__file__).parent / "emails"

KINDS = frozenset(
    {
        "low_balance",
        "depleted",
        "purchase_receipt",
        "renewal_receipt",
        "renewal_failed",
        "subscription_cancelled",
        # Payments that wait for the customer, and refunds (chatmeter.billing).
        "payment_action_required",
        "refund_issued",
        "topup_receipt",
        "topup_disabled",
        "contact_email_changed",
        # An assistant using far more than on its typical day (chatmeter.chat.surges).
        "usage_surge",
        # A webhook endpoint that failed for days, turned off (chatmeter.webhooks.disabling).
        "webhook_disabled",
        # The control panel's single-use links (chatmeter.accounts.links).
        "password_reset",
        "contact_email_confirm",
        "team_invitation",
        "verify_email",
    }
)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(EMAILS_DIR),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    filters: dict[str, Callable[..., str]] = {
        "thousands": thousands,
        "plural": plural,
        "month": month_name,
        "instant": utc_time,
    }
    for name, function in filters.items():
        env.filters[name] = _strict(function)
    return env


def _strict(function: Callable[..., str]) -> Callable[..., str]:
    """A filter sees a missing figure before it is printed; fail as printing it would."""

    @functools.wraps(function)
    def checked(value: Any, *args: Any) -> str:
        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises UndefinedError, naming the figure
        return function(value, *args)

    return checked


_env = _environment()


def render(kind: str, context: dict[str, Any], *, base_url: str) -> RenderedEmail:
    """Render the email ``kind`` with the caller's figures; unknown kinds raise ValueError."""
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    base = base_url.rstrip("/")
    figures = {
        **context,
        "base_url": base,
        "billing_url": f"{base}/panel/billing",
        "buy_url": f"{base}/panel/billing?buy=1",
    }
    text_template = _env.get_template(f"{kind}.txt")
    subject_block = text_template.blocks["subject"](text_template.new_context(figures))
    # A header must be one line whatever the figures contain.
    subject = " ".join("".join(subject_block).split())
    text = _tidy(text_template.render(figures))
    html = _env.get_template(f"{kind}.html").render(figures, subject=subject)
    return RenderedEmail(subject=subject, text=text, html=html)


def _tidy(text: str) -> str:
    """At most one blank line between paragraphs, whatever the template's conditionals left."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
