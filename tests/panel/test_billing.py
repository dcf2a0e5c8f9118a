"""The "Get more tokens" endpoint, the dashboard's figures and the billing page's forms."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from chatmeter.accounts.models import Role, User
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing.models import Invoice, Subscription, SubscriptionStatus
from chatmeter.billing.summary import balance_summary, subscription_summary
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from tests.support.accounts import add_tokens
from tests.support.panel import Panel, new_panel

BAD_PACKAGES = [0, -1, 1001, "ten", "", "2.5", 2.5, True, None, [2], "1" * 30]


def account_id(ctx: Context, email: str = "owner@example.com") -> int:
    with ctx.db.read() as session:
        found = session.scalar(select(User.account_id).where(User.email == email))
    assert found is not None
    return found


def invoices(ctx: Context, account: int) -> int:
    with ctx.db.read() as session:
        return int(
            session.scalar(select(func.count(Invoice.id)).where(Invoice.account_id == account)) or 0
        )


def summary(ctx: Context, account: int):  # type: ignore[no-untyped-def]
    with ctx.db.read() as session:
        return balance_summary(session, account_id=account, now=ctx.clock.now())


def figure(html: str, name: str) -> str:
    match = re.search(rf'data-testid="{name}">([^<]+)<', html)
    assert match, name
    return match[1].strip()


def test_buying_tokens_grants_them_once_per_window(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    first = panel.buy(2, key="window-one-abc")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["invoice"]["tokens"] == 10_000
    assert body["invoice"]["amount"] == "€18.00"
    assert body["figures"]["balance"] == summary(ctx, account).balance == 10_000
    assert body["figures"]["active"] is True

    retry = panel.buy(2, key="window-one-abc")  # a double click, a retried request
    assert retry.status_code == 200
    assert retry.json()["invoice"]["number"] == body["invoice"]["number"]
    assert summary(ctx, account).balance == 10_000
    assert invoices(ctx, account) == 1

    changed = panel.buy(3, key="window-one-abc")
    assert changed.status_code == 409
    assert "already used for a different purchase" in changed.json()["error"]["message"]

    assert panel.buy(1, key="window-two-abc").status_code == 200
    assert summary(ctx, account).balance == 15_000
    assert invoices(ctx, account) == 2


@pytest.mark.parametrize("packages", BAD_PACKAGES)
def test_bad_package_numbers_buy_nothing(ctx: Context, panel: Panel, packages: object) -> None:
    panel.sign_up()
    response = panel.buy(packages)
    assert response.status_code == 422
    assert (
        response.json()["error"]["message"] == "Enter a whole number of packages from 1 to 1,000."
    )
    assert invoices(ctx, account_id(ctx)) == 0
    assert summary(ctx, account_id(ctx)).balance == 0


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"packages": 2}'])
def test_a_malformed_purchase_request_buys_nothing(ctx: Context, panel: Panel, body: bytes) -> None:
    panel.sign_up()
    response = panel.client.post(
        "/panel/tokens",
        content=body,
        headers={
            "X-CSRF-Token": panel.csrf("/panel/dashboard"),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"]
    assert invoices(ctx, account_id(ctx)) == 0


def test_buying_needs_a_session(ctx: Context, panel: Panel) -> None:
    response = panel.buy(2, token=panel.csrf())
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Your session has ended; sign in again."


def test_a_member_cannot_buy(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    with ctx.db.uow() as uow:
        user = uow.session.scalar(select(User))
        assert user is not None
        user.role = Role.MEMBER
        uow.commit()
    response = panel.buy(2)
    assert response.status_code == 403
    assert "only the account's owner" in response.json()["error"]["message"].lower()
    assert invoices(ctx, account_id(ctx)) == 0


def test_the_dashboard_shows_exactly_the_ledgers_figures(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    page = panel.client.get("/panel/dashboard").text
    # Nothing bought yet: no gauge at 0%, no alarm, a plain sentence (tests/panel/test_first_run).
    assert "You have not bought any tokens yet." in page
    assert '<div class="grid" data-show-when="had-tokens" hidden>' in page

    panel.buy(3, key="window-three-abc")
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session, account_id=account, tokens=2_500, key="t:1", ttl_seconds=60, now=now
        )
        ledger.settle(
            uow.session, account_id=account, hold_id=hold.id, context=1_200, generation=834, now=now
        )
        uow.commit()
    figures = summary(ctx, account)
    page = panel.client.get("/panel/dashboard").text
    assert figure(page, "balance") == f"{figures.balance:,}" == "12,966"
    assert figure(page, "limit") == f"{figures.limit:,}" == "15,000"
    assert figure(page, "used") == f"{figures.used_this_month:,}" == "2,034"
    assert figure(page, "renews") == "1 December 2026"
    assert "Shop · November 2026" in page  # the month, as people write it
    json_figures = panel.client.get("/panel/figures").json()
    assert json_figures["balance"] == figures.balance
    assert json_figures["used_this_month"] == figures.used_this_month
    assert json_figures["limit"] == figures.limit
    # Visible banners: neither out of tokens nor low (86%).
    assert 'data-show-when="inactive" role="alert" hidden' in page
    assert 'data-show-when="low" hidden' in page


def test_the_dashboard_links_each_assistant_with_its_status(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    with ctx.db.uow() as uow:
        bot = assistants.create_assistant(
            uow.session,
            account_id=account,
            fields=AssistantFields(name="Front desk"),
            now=ctx.clock.now(),
        )
        uow.commit()
    pill = re.compile(r'<span class="pill ([\w-]+)" data-assistant-status[^>]*>([^<]+)</span>')

    assert pill.findall(panel.client.get("/panel/dashboard").text) == [
        ("pill-wait", "Hidden: no tokens yet")
    ]
    panel.buy(1, key="window-status-abc")
    page = panel.client.get("/panel/dashboard").text
    assert pill.findall(page) == [("pill-wait", "No files")]
    assert f'href="/panel/assistants/{bot.id}"' in page


def test_below_20_percent_the_dashboard_says_so(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    panel.buy(2, key="window-low-abc")
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session, account_id=account, tokens=8_500, key="t:low", ttl_seconds=60, now=now
        )
        ledger.settle(
            uow.session, account_id=account, hold_id=hold.id, context=8_000, generation=500, now=now
        )
        uow.commit()
    page = panel.client.get("/panel/dashboard").text
    assert summary(ctx, account).low
    assert 'data-show-when="low" hidden' not in page
    assert "Your balance is below 20% of this month&#39;s limit." in page or (
        "Your balance is below 20% of this month's limit." in page
    )


def test_the_renewal_date_is_in_the_accounts_time_zone(ctx: Context) -> None:
    panel = new_panel(ctx)
    panel.sign_up(timezone="Pacific/Auckland")
    add_tokens(ctx, account_id(ctx), 1_000)
    page = panel.client.get("/panel/dashboard").text
    # 15 November 12:00 UTC is already 16 November in Auckland; the month renews on its 1st.
    assert figure(page, "renews") == "1 December 2026"


def test_the_billing_page_shows_the_subscription(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    panel.buy(4, key="window-bill-abc")
    page = panel.client.get("/panel/billing").text
    with ctx.db.read() as session:
        plan = subscription_summary(
            session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
        )
    assert figure(page, "packages") == str(plan["packages"]) == "4"
    assert figure(page, "monthly-price") == f"€{plan['monthly_price']}" == "€36.00"
    assert figure(page, "renews") == "1 December 2026"
    assert "CM-2026-000001" in page
    assert "Receipt" in page
    receipt = panel.client.get("/panel/billing/invoices/1")
    assert receipt.status_code == 200
    assert "20,000" in receipt.text and "€36.00" in receipt.text


def test_the_billing_page_tells_a_partial_refund_from_a_full_one(
    ctx: Context, panel: Panel
) -> None:
    from chatmeter.billing import refunds
    from chatmeter.billing.invoices import locked_invoice

    panel.sign_up()
    panel.buy(2, key="window-refund-abc")  # 18.00 EUR

    def refunded_so_far(cents: int) -> str:
        """As Stripe's webhook writes a refund; the invoice's status pill then."""
        with ctx.db.uow() as uow:
            invoice = locked_invoice(uow.session, 1)
            refunds.record_refund(
                uow.session, invoice=invoice, refunded_cents=cents, now=ctx.clock.now()
            )
            uow.commit()
        page = panel.client.get("/panel/billing").text
        pill = re.search(r'data-label="Status"><span class="pill ([\w-]+)">([^<]+)<', page)
        assert pill, page
        return f"{pill[1]} {pill[2]}"

    assert refunded_so_far(900) == "pill-wait Partly refunded"
    part = panel.client.get("/panel/billing/invoices/1").text
    assert "<dt>Refunded</dt><dd>€9.00 on 15 November 2026</dd>" in part
    assert refunded_so_far(1800) == "pill-wait Refunded"
    full = panel.client.get("/panel/billing/invoices/1").text
    assert "<dt>Refunded</dt><dd>€18.00 (in full) on 15 November 2026</dd>" in full


def test_another_accounts_receipt_is_not_found(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    panel.buy(1, key="window-mine-abc")
    other = new_panel(ctx)
    other.sign_up("other@example.com")
    assert other.client.get("/panel/billing/invoices/1").status_code == 404
    assert other.client.get("/panel/billing/invoices/abc").status_code == 404


def test_changing_the_packages_takes_effect_at_renewal(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    panel.buy(2, key="window-change-abc")
    response = panel.post("/panel/billing/packages", {"packages": "5"}, page="/panel/billing")
    assert response.status_code == 303
    page = panel.client.get(response.headers["location"]).text
    assert "It takes effect at your next renewal." in page
    with ctx.db.read() as session:
        subscription = session.get(Subscription, account)
        assert subscription is not None
        assert subscription.quantity == 2 and subscription.next_quantity == 5
    assert summary(ctx, account).balance == 10_000


@pytest.mark.parametrize("packages", ["0", "-2", "1001", "five", "", "3.5", "9" * 40])
def test_bad_package_changes_give_a_message_and_change_nothing(
    ctx: Context, panel: Panel, packages: str
) -> None:
    panel.sign_up()
    account = account_id(ctx)
    response = panel.post("/panel/billing/packages", {"packages": packages}, page="/panel/billing")
    assert response.status_code == 422
    assert "Enter a whole number of packages from 1 to 1,000." in response.text
    with ctx.db.read() as session:
        subscription = session.get(Subscription, account)
        assert subscription is not None and subscription.next_quantity is None


def test_cancelling_says_what_happens_to_the_tokens(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    account = account_id(ctx)
    add_tokens(ctx, account, 7_000)
    confirm = panel.client.get("/panel/billing/cancel").text
    assert "Your remaining <strong>7,000 tokens</strong> stay usable until the 1st" in confirm
    assert "1 December 2026" in confirm
    response = panel.post("/panel/billing/cancel", {}, page="/panel/billing/cancel")
    assert response.status_code == 303
    page = panel.client.get(response.headers["location"]).text
    assert "Your remaining tokens stay usable until the 1st." in page
    with ctx.db.read() as session:
        subscription = session.get(Subscription, account)
        assert subscription is not None
        assert subscription.status == SubscriptionStatus.CANCELLED
    assert summary(ctx, account).balance == 7_000


def test_pages_need_a_session(ctx: Context, panel: Panel) -> None:
    for path in ["/panel/dashboard", "/panel/billing", "/panel/usage", "/panel/billing/cancel"]:
        response = panel.client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/panel/sign-in"


def test_every_page_has_the_navigation_and_the_button(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    for path in [
        "/panel/dashboard",
        "/panel/assistants",
        "/panel/usage",
        "/panel/billing",
        "/panel/settings",
    ]:
        page = panel.client.get(path).text
        for label in ["Dashboard", "Assistants", "Usage", "Billing", "Settings"]:
            assert f"<span>{label}</span>" in page, (path, label)
        assert "Get more tokens" in page
        assert 'id="tokens-modal"' in page


def test_an_unknown_panel_address_is_a_page(ctx: Context, panel: Panel) -> None:
    anonymous = panel.client.get("/panel/no-such-page")
    assert anonymous.status_code == 404
    assert "There is nothing at this address." in anonymous.text
    panel.sign_up()
    signed_in = panel.client.get("/panel/billing/nothing/here")
    assert signed_in.status_code == 404
    assert "Get more tokens" in signed_in.text
    assert panel.client.get("/panel/static/panel.css").status_code == 200


def test_the_panel_says_when_unused_package_tokens_roll_over(ctx: Context) -> None:
    """With CHATMETER_ROLLOVER_MONTHS, "Get more tokens", billing, auto top-up and cancelling
    say how long package tokens last; without it, none says they roll over."""
    import dataclasses

    from fastapi.testclient import TestClient

    from chatmeter.web.app import create_app

    def pages(months: int) -> dict[str, str]:
        changed = ctx.settings.model_copy(update={"rollover_months": months})
        app = create_app(dataclasses.replace(ctx, settings=changed))
        with TestClient(app, base_url="http://127.0.0.1") as client:
            panel = Panel(client)
            panel.sign_up(email=f"owner{months}@example.com")
            shown = {
                path: client.get(path).text
                for path in ("/panel/dashboard", "/panel/billing", "/panel/billing/cancel")
            }
            cancelled = panel.post("/panel/billing/cancel", {}, page="/panel/billing/cancel")
            shown["cancelled"] = client.get(cancelled.headers["location"]).text
            return shown

    rolling = pages(2)
    assert "they stay usable 2 months after their own month" in rolling["/panel/dashboard"]
    assert "(package tokens 2 months longer)" in rolling["/panel/dashboard"]
    assert "stay usable 2 months longer" in rolling["/panel/billing"]
    assert "2 months after the month they are bought in" in rolling["/panel/billing"]
    assert "those of your packages 2 months longer" in rolling["/panel/billing/cancel"]
    assert (
        "Your remaining tokens stay usable until the 1st; those of your packages 2 months "
        "longer." in rolling["cancelled"]
    )
    for page in pages(0).values():
        assert "roll over" not in page and "months longer" not in page
