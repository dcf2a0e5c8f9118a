from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

import jinja2
import pytest

from chatmeter.accounts.models import Account
from chatmeter.ledger.models import Balance
from chatmeter.notifications.balance_notices import account_figures
from chatmeter.notifications.templates import EMAILS_DIR, KINDS, render, thousands

BASE_URL = "https://chat.example.com"
BUY_URL = "https://chat.example.com/panel/billing?buy=1"
EVIL = '<script>alert("x")</script>'

BALANCE = {
    "account_name": "Acme Bakery",
    "balance": 812,
    "available": 700,
    "limit": 5000,
    "period": "2026-11",
    "renews_at": "2026-12-01T00:00:00+00:00",
    "renews_on": "2026-12-01",
    "timezone": "Europe/Berlin",
    "percent_left": 16,
    "threshold_percent": 20,
}

# Every kind with the figures its callers pass, and the text both parts must show.
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "low_balance": (
        {
            **BALANCE,
            "forecast": "At your pace (about 400 tokens a day) you will run out on 18 "
            "November; 1 more package lasts until the 1st.",
        },
        [
            "below 20%",
            "812 of 5,000 tokens",
            "2026-12-01",
            "Europe/Berlin",
            BUY_URL,
            "you will run out on 18 November; 1 more package lasts until the 1st.",
        ],
    ),
    "depleted": (
        {**BALANCE, "balance": 0, "available": 0, "percent_left": 0},
        [
            "run out of tokens",
            "hidden from your visitors",
            "come back by themselves",
            "5,000",
            "November 2026",
            "2026-12-01",
            BUY_URL,
        ],
    ),
    "purchase_receipt": (
        {
            "account_name": "Acme Bakery",
            "invoice_number": "INV-2026-0042",
            "packages": 2,
            "tokens": 10000,
            "amount": "18.00",
            "currency": "EUR",
            "monthly_packages": 3,
            "monthly_amount": "27.00",
            "balance": 12345,
            "limit": 15000,
            "renews_on": "2026-12-01",
        },
        [
            "INV-2026-0042",
            "2 packages",
            "10,000 tokens",
            "18.00 EUR",
            "3 packages",
            "27.00 EUR",
            "12,345 of 15,000 tokens",
            "2026-12-01",
            f"{BASE_URL}/panel/billing",
        ],
    ),
    "renewal_receipt": (
        {
            "account_name": "Acme Bakery",
            "invoice_number": "INV-2026-0050",
            "period": "2026-12",
            "packages": 1,
            "tokens": 6000,
            "free_tokens": 1000,
            "amount": "9.00",
            "currency": "EUR",
            "balance": 6000,
            "limit": 6000,
            "renews_on": "2027-01-01",
        },
        [
            "INV-2026-0050",
            "December 2026",
            "1 package",
            "6,000",
            "1,000 free",
            "9.00 EUR",
            "6,000 of 6,000 tokens",
            "2027-01-01",
        ],
    ),
    "renewal_failed": (
        {
            "account_name": "Acme Bakery",
            "invoice_number": "INV-2026-0051",
            "period": "2026-12",
            "amount": "27.00",
            "currency": "EUR",
            "reason": "Card declined",
            "next_attempt_on": "2026-12-02",
            "balance": 0,
        },
        [
            "INV-2026-0051",
            "December 2026",
            "27.00 EUR",
            "Card declined",
            "try again on",
            "2026-12-02",
            BUY_URL,
        ],
    ),
    "payment_action_required": (
        {
            "account_name": "Acme Bakery",
            "invoice_number": "CM-2026-000051",
            "packages": 3,
            "tokens": 15000,
            "amount": "27.00",
            "currency": "EUR",
            "pay_url": "https://chat.example.com/panel/billing/invoices/51/pay",
        },
        [
            "CM-2026-000051",
            "27.00 EUR",
            "3 packages",
            "15,000 tokens",
            "https://chat.example.com/panel/billing/invoices/51/pay",
            "nothing is charged twice",
        ],
    ),
    "refund_issued": (  # a partial refund: every figure shows (see the full one below)
        {
            "account_name": "Acme Bakery",
            "invoice_number": "CM-2026-000052",
            "amount": "4.50",
            "currency": "EUR",
            "in_full": False,
            "refunded_total": "4.50",
            "invoice_amount": "18.00",
            "invoice_tokens": 10000,
            "tokens_share": 2500,
            "tokens_removed": 2500,
            "balance": 1250,
        },
        [
            "CM-2026-000052",
            "4.50 EUR",
            "4.50 of the invoice's 18.00 EUR refunded so far",
            "The same share of its 10,000 tokens is 2,500 tokens (rounded down): they were "
            "removed from your balance.",
            "1,250 tokens",
        ],
    ),
    "subscription_cancelled": (
        {
            "account_name": "Acme Bakery",
            "packages": 4,
            "balance": 15250,
            "ends_on": "2026-12-01",
        },
        ["4 packages", "15,250", "2026-12-01", BUY_URL],
    ),
    "topup_receipt": (
        {
            "account_name": "Acme Bakery",
            "invoice_number": "CM-2026-000042",
            "packages": 2,
            "tokens": 10000,
            "amount": "18.00",
            "currency": "EUR",
            "threshold": 1000,
            "used": 1,
            "cap": 3,
            "balance": 10800,
            "expires_on": "2026-12-01",
        },
        [
            "CM-2026-000042",
            "below 1,000 tokens",
            "2 packages",
            "10,000 tokens",
            "18.00 EUR",
            "10,800 tokens",
            "1 of 3 top-ups",
            "2026-12-01",
            "never changes what renews",
            f"{BASE_URL}/panel/billing",
        ],
    ),
    "topup_disabled": (
        {
            "account_name": "Acme Bakery",
            "invoice_number": "CM-2026-000043",
            "packages": 1,
            "tokens": 5000,
            "amount": "9.00",
            "currency": "EUR",
            "reason": "Your card was declined.",
            "balance": 640,
        },
        [
            "CM-2026-000043",
            "9.00 EUR",
            "1 package",
            "5,000 tokens",
            "Your card was declined.",
            "turned off",
            "640 tokens",
            f"{BASE_URL}/panel/billing",
        ],
    ),
    "contact_email_changed": (
        {
            "account_name": "Acme Bakery",
            "old_email": "owner@acme.example",
            "new_email": "billing@acme.example",
            "recipient": "old",
            "changed_at": "2026-11-15T12:00:00+00:00",
        },
        [
            "owner@acme.example",
            "billing@acme.example",
            "2026-11-15 12:00 UTC",
            "If this wasn't you",
            BASE_URL,
        ],
    ),
    "password_reset": (
        {
            "account_name": "Acme Bakery",
            "email": "owner@acme.example",
            "token": "Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "expires_at": "2026-11-15T13:00:00+00:00",
        },
        [
            "owner@acme.example",
            f"{BASE_URL}/panel/password/reset?token=Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "2026-11-15 13:00 UTC",
            "If you didn't ask for this",
        ],
    ),
    "contact_email_confirm": (
        {
            "account_name": "Acme Bakery",
            "old_email": "owner@acme.example",
            "new_email": "billing@acme.example",
            "requested_by": "boss@acme.example",
            "token": "Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "expires_at": "2026-11-16T12:00:00+00:00",
        },
        [
            "owner@acme.example",
            "billing@acme.example",
            "boss@acme.example",
            f"{BASE_URL}/panel/settings/contact-email/confirm?token="
            "Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "2026-11-16 12:00 UTC",
        ],
    ),
    "team_invitation": (
        {
            "account_name": "Acme Bakery",
            "invited_by": "boss@acme.example",
            "email": "new@acme.example",
            "role": "member",
            "token": "Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "expires_at": "2026-11-22T12:00:00+00:00",
        },
        [
            "boss@acme.example",
            "new@acme.example",
            "a member",
            f"{BASE_URL}/panel/invite/accept?token=Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "2026-11-22 12:00 UTC",
        ],
    ),
    "verify_email": (
        {
            "account_name": "Acme Bakery",
            "email": "owner@acme.example",
            "free_tokens": 1000,
            "token": "Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "expires_at": "2026-11-18T12:00:00+00:00",
        },
        [
            "owner@acme.example",
            f"{BASE_URL}/panel/verify-email?token=Abc123-_xyzAbc123-_xyzAbc123-_xyzAbc123-_x",
            "2026-11-18 12:00 UTC",
            "free monthly tokens",
            "take the account over",
        ],
    ),
    "usage_surge": (
        {
            "account_name": "Acme Bakery",
            "assistant_id": 7,
            "assistant_name": "Front desk",
            "day": "2026-11-18",
            "today_tokens": 12400,
            "typical_tokens": 3100,
            "days_counted": 9,
            "history_days": 14,
            "ratio": "4",
            "multiple": "2.5",
            "min_tokens": 2000,
        },
        [
            "Front desk",
            "12,400 tokens today (2026-11-18)",
            "about 4× its typical day of 3,100 tokens",
            "median of the 9 days it was used in the last 14",
            "above 2.5× that and 2,000 tokens",
            f"{BASE_URL}/panel/assistants/7/conversations",
            f"{BASE_URL}/panel/settings",
        ],
    ),
    "webhook_disabled": (
        {
            "account_name": "Acme Bakery",
            "endpoint_id": 12,
            "url": "https://shop.acme.example/hooks",
            "description": "Shop backend",
            "failing_since": "2026-11-15T12:00:00+00:00",
            "days": 3,
            "last_error": "HTTP 502: Bad Gateway",
        },
        [
            "failed for 3 days, since 2026-11-15 12:00 UTC",
            "https://shop.acme.example/hooks",
            "(Shop backend)",
            "Last error: HTTP 502: Bad Gateway",
            "turn the endpoint back on",
            f"{BASE_URL}/panel/settings/webhooks/12",
        ],
    ),
}

# Passed by the callers (all balance emails get the same figures) but not
# shown: the emails speak of the balance and the renewal date, not of holds,
# instants or, once the tokens are gone, percentages.
NOT_SHOWN = {
    "low_balance": {"available", "renews_at", "forecast"},
    "depleted": {"available", "renews_at", "percent_left", "threshold_percent"},
    # Refund emails queued before partial refunds existed have no ``in_full``: all were full.
    "refund_issued": {"in_full"},
}


def test_every_kind_has_a_case_and_both_templates() -> None:
    assert set(CASES) == KINDS
    for kind in KINDS:
        assert (EMAILS_DIR / f"{kind}.txt").is_file()
        assert (EMAILS_DIR / f"{kind}.html").is_file()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_both_parts_show_the_real_figures(kind: str) -> None:
    context, expected = CASES[kind]
    email = render(kind, context, base_url=BASE_URL + "/")
    assert email.subject and "\n" not in email.subject
    assert email.html.lstrip().startswith("<!DOCTYPE html>")
    shown = html.unescape(email.html)
    for fragment in expected:
        assert fragment in email.text, fragment
        assert fragment in shown, fragment
    assert "Acme Bakery" in email.text
    assert f"<title>{email.subject}</title>" in shown
    assert "{{" not in email.text and "{{" not in email.html


@pytest.mark.parametrize("kind", sorted(CASES))
def test_html_escapes_the_account_name(kind: str) -> None:
    context, _ = CASES[kind]
    email = render(kind, {**context, "account_name": EVIL}, base_url=BASE_URL)
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert EVIL in email.text  # plain text is not HTML: it shows the name as typed


@pytest.mark.parametrize(
    ("kind", "key"),
    [(kind, key) for kind, (context, _) in sorted(CASES.items()) for key in sorted(context)],
)
def test_every_figure_is_required(kind: str, key: str) -> None:
    context, _ = CASES[kind]
    missing = {k: v for k, v in context.items() if k != key}
    if key in NOT_SHOWN.get(kind, set()):
        render(kind, missing, base_url=BASE_URL)
        return
    with pytest.raises(jinja2.UndefinedError):
        render(kind, missing, base_url=BASE_URL)


@pytest.mark.parametrize("kind", ["low_balance", "depleted"])
def test_the_figures_the_ledger_queues_render(kind: str) -> None:
    """The contract with ``balance_notices.account_figures``, which fills these emails."""
    account = Account(
        id=7, name="Acme Bakery", contact_email="o@acme.example", timezone="Asia/Tokyo"
    )
    balance = Balance(
        account_id=7, available=700, reserved=112, period="2026-11", period_granted=5000
    )
    figures = account_figures(account, balance, dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    email = render(
        kind, json.loads(json.dumps(figures)), base_url=BASE_URL
    )  # as the outbox stores it
    assert "5,000" in email.text
    assert "2026-12-01 (Asia/Tokyo)" in email.text
    if kind == "low_balance":
        assert "812 of 5,000 tokens left (16%)" in email.text


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown email kind"):
        render("welcome", {}, base_url=BASE_URL)


def test_a_template_name_is_not_a_kind() -> None:
    with pytest.raises(ValueError):
        render("_layout", {}, base_url=BASE_URL)


def test_renewal_failed_without_a_next_attempt() -> None:
    context, _ = CASES["renewal_failed"]
    email = render("renewal_failed", {**context, "next_attempt_on": None}, base_url=BASE_URL)
    assert "won't try this payment again" in email.text
    assert "try again on" not in email.text
    assert "None" not in email.text and "None" not in email.html


def test_renewal_failed_without_a_reason() -> None:
    context, _ = CASES["renewal_failed"]
    email = render("renewal_failed", {**context, "reason": None}, base_url=BASE_URL)
    assert "Reason" not in email.text and "Reason" not in email.html
    assert "None" not in email.text and "None" not in email.html


def test_renewal_failed_with_tokens_left() -> None:
    context, _ = CASES["renewal_failed"]
    email = render("renewal_failed", {**context, "balance": 1500}, base_url=BASE_URL)
    assert "Your balance now: 1,500 tokens. When it runs out" in email.text
    assert "Your balance is 0 tokens" in render("renewal_failed", context, base_url=BASE_URL).text


def test_renewal_receipt_without_free_tokens() -> None:
    context, _ = CASES["renewal_receipt"]
    email = render("renewal_receipt", {**context, "free_tokens": 0}, base_url=BASE_URL)
    assert "free" not in email.text and "free" not in email.html


def test_a_full_refund_speaks_of_the_unspent_tokens_only() -> None:
    context, _ = CASES["refund_issued"]
    full = {**context, "amount": "18.00", "in_full": True, "refunded_total": "18.00"}
    email = render("refund_issued", {**full, "tokens_removed": 7000}, base_url=BASE_URL)
    assert "We refunded 18.00 EUR for invoice CM-2026-000052" in email.text
    assert "The 7,000 tokens of that invoice you had not used were removed" in email.text
    assert "share" not in email.text and "share" not in email.html
    spent = render("refund_issued", {**full, "tokens_removed": 0}, base_url=BASE_URL)
    assert "had all been used, so your balance is unchanged" in spent.text


def test_a_refund_email_queued_before_partial_refunds_still_renders() -> None:
    old = {
        "account_name": "Acme Bakery",
        "invoice_number": "CM-2026-000052",
        "amount": "18.00",
        "currency": "EUR",
        "tokens_removed": 7000,
        "balance": 1250,
    }
    email = render("refund_issued", old, base_url=BASE_URL)
    assert "The 7,000 tokens of that invoice you had not used" in email.text


@pytest.mark.parametrize(
    ("removed", "share", "shown"),
    [
        (1500, 5000, "1,500 of them were still unused and were removed from your balance; "
         "the others had been used."),
        (0, 5000, "they had all been used, so your balance is unchanged."),
        (0, 0, "is 0 tokens (rounded down): no tokens leave your balance."),
    ],
)  # fmt: skip
def test_a_partial_refund_says_how_much_of_its_share_was_still_unspent(
    removed: int, share: int, shown: str
) -> None:
    context, _ = CASES["refund_issued"]
    figures = {**context, "tokens_removed": removed, "tokens_share": share}
    email = render("refund_issued", figures, base_url=BASE_URL)
    assert shown in email.text
    assert shown in html.unescape(email.html)


def test_contact_email_change_to_the_new_address() -> None:
    context, _ = CASES["contact_email_changed"]
    email = render("contact_email_changed", {**context, "recipient": "new"}, base_url=BASE_URL)
    assert "This address is now the contact email" in email.text
    assert "owner@acme.example" in email.text
    assert "If this wasn't you" not in email.text


def test_contact_email_change_needs_a_known_recipient() -> None:
    context, _ = CASES["contact_email_changed"]
    with pytest.raises(jinja2.UndefinedError):
        render("contact_email_changed", {**context, "recipient": "both"}, base_url=BASE_URL)


def test_thousands_separators() -> None:
    assert thousands(5000) == "5,000"
    assert thousands(1234567) == "1,234,567"
    assert thousands(0) == "0"
    with pytest.raises(TypeError):
        thousands(5000.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        thousands(True)
