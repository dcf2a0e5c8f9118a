"""The billing page with Stripe: the first purchase on Stripe's page, the pending payment the
page asks about, the saved card, replacing it, and every route reached from the wrong account,
by a member and without the form's token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.accounts.models import Role, User
from chatmeter.billing.gateways import ManualGateway
from chatmeter.billing.models import Invoice, InvoiceStatus
from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.support.fake_stripe import FakeStripe
from tests.support.panel import Panel
from tests.support.payments import give_card, signed


def panel_on(ctx: Context) -> Panel:
    return Panel(TestClient(create_app(ctx), base_url="http://127.0.0.1"))


@pytest.fixture
def owner(stripe_ctx: Context) -> Iterator[Panel]:
    panel = panel_on(stripe_ctx)
    with panel.client:
        panel.sign_up()
        yield panel


def account_of(ctx: Context, email: str = "owner@example.com") -> int:
    with ctx.db.read() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        return user.account_id


def invoice(ctx: Context, invoice_id: int) -> Invoice:
    with ctx.db.read() as session:
        found = session.get(Invoice, invoice_id)
        assert found is not None
        return found


def test_the_first_purchase_sends_the_owner_to_stripe_and_the_page_waits_for_it(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    response = owner.buy(2)
    assert response.status_code == 200
    body = response.json()
    assert body["pay_url"].startswith(f"{fake.url}/pay/cs_test_")
    assert body["invoice"]["status"] == "pending"
    invoice_id = body["invoice"]["id"]

    page = owner.client.get(f"/panel/billing?paying={invoice_id}").text
    assert 'data-pending-invoice="' in page and "Waiting for Stripe to confirm" in page
    state = owner.client.get(f"/panel/billing/invoices/{invoice_id}/state").json()
    assert (state["status"], state["figures"]["balance"]) == ("pending", 0)

    assert fake.complete_checkout(body["pay_url"].rsplit("/", 1)[-1], "4242424242424242") is None
    for event in fake.events():
        data, headers = signed(fake, event)
        assert owner.client.post("/webhooks/stripe", content=data, headers=headers).is_success

    state = owner.client.get(f"/panel/billing/invoices/{invoice_id}/state").json()
    assert (state["status"], state["figures"]["balance"], state["tokens"]) == (
        "paid",
        10_000,
        10_000,
    )
    page = owner.client.get("/panel/billing").text
    assert "Visa ending in 4242" in page and "Replace card" in page


def test_leaving_stripes_page_voids_the_purchase(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    invoice_id = owner.buy(1).json()["invoice"]["id"]

    back = owner.client.get(
        f"/panel/billing/invoices/{invoice_id}/cancelled", follow_redirects=False
    )

    assert back.status_code == 303 and back.headers["location"] == "/panel/billing?done=abandoned"
    assert invoice(stripe_ctx, invoice_id).status == InvoiceStatus.VOID
    assert "nothing was charged" in owner.client.get(back.headers["location"]).text


def test_the_emailed_link_opens_stripes_page_for_that_invoice(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    invoice_id = owner.buy(1).json()["invoice"]["id"]

    opened = owner.client.get(f"/panel/billing/invoices/{invoice_id}/pay", follow_redirects=False)

    assert opened.status_code == 303 and opened.headers["location"].startswith(f"{fake.url}/pay/")


def test_a_saved_card_is_replaced_on_stripes_page(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    give_card(stripe_ctx, fake, account_of(stripe_ctx))
    assert "Visa ending in 4242" in owner.client.get("/panel/billing").text

    replaced = owner.post("/panel/billing/card", {}, page="/panel/billing")
    assert replaced.status_code == 303
    session = fake.get(replaced.headers["location"].rsplit("/", 1)[-1])
    assert session["mode"] == "setup"

    portal = owner.post("/panel/billing/portal", {}, page="/panel/billing")
    assert portal.status_code == 303 and portal.headers["location"].startswith(
        f"{fake.url}/portal/"
    )


def test_another_accounts_invoice_is_not_found_on_every_payment_route(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    invoice_id = owner.buy(1).json()["invoice"]["id"]
    sessions_before = len(fake.requests)
    stranger = panel_on(stripe_ctx)
    with stranger.client:
        stranger.sign_up("stranger@example.com")
        for path in ("pay", "cancelled", "state"):
            response = stranger.client.get(
                f"/panel/billing/invoices/{invoice_id}/{path}", follow_redirects=False
            )
            assert response.status_code == 404, path
        page = stranger.client.get(f"/panel/billing?paying={invoice_id}").text
    assert "data-pending-invoice" not in page
    assert invoice(stripe_ctx, invoice_id).status == InvoiceStatus.PENDING
    assert len(fake.requests) == sessions_before  # Stripe was not even asked


def test_the_manual_gateway_shows_no_card_and_says_a_pending_purchase_waits(ctx: Context) -> None:
    waiting = Context(
        settings=ctx.settings, db=ctx.db, clock=ctx.clock, gateway=ManualGateway(auto_approve=False)
    )
    panel = panel_on(waiting)
    with panel.client:
        panel.sign_up()
        body = panel.buy(1).json()
        page = panel.client.get("/panel/billing").text
    assert body["pay_url"] is None
    assert body["invoice"]["status"] == "pending" and body["figures"]["balance"] == 0
    assert 'data-testid="saved-card"' not in page


def test_a_member_may_not_pay_replace_the_card_or_open_the_portal(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    invoice_id = owner.buy(1).json()["invoice"]["id"]
    with stripe_ctx.db.uow() as uow:
        user = uow.session.scalar(select(User))
        assert user is not None
        user.role = Role.MEMBER
        uow.commit()

    assert owner.client.get(f"/panel/billing/invoices/{invoice_id}/pay").status_code == 403
    assert owner.post("/panel/billing/card", {}, page="/panel/billing").status_code == 403
    assert owner.post("/panel/billing/portal", {}, page="/panel/billing").status_code == 403
    owner.client.get(f"/panel/billing/invoices/{invoice_id}/cancelled")
    assert invoice(stripe_ctx, invoice_id).status == InvoiceStatus.PENDING  # left as it was
    assert "Replace card" not in owner.client.get("/panel/billing").text


def test_the_card_forms_need_the_pages_token(
    stripe_ctx: Context, fake: FakeStripe, owner: Panel
) -> None:
    for path in ("/panel/billing/card", "/panel/billing/portal"):
        response = owner.client.post(path, data={}, follow_redirects=False)
        assert response.status_code in (400, 403), path
    assert not [r for r in fake.requests if r[1] == "/v1/checkout/sessions"]
