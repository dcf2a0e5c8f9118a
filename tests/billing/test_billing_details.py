"""The customer's billing details (name, address, tax id on its invoices), on SQLite and
PostgreSQL.

Promises guarded here:

- the API reads them with any key and replaces them with an ``all`` key only
  (``GET``/``PUT /api/v1/billing/details``); the panel's billing page shows the owner a
  form (CSRF-checked) and a member the details, read-only; the operator's
  ``chatmeter accounts billing-details`` shows them and changes the ones given;
- every way in refuses the same bad input (too long, too many lines, characters a tax
  id has not, something that is not text) with a readable message, nothing changed;
- the next invoice PDF shows them; without a billing name it shows the account's name
  and contact email;
- the profile row is made once, however many first writers race.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.accounts import keys
from chatmeter.accounts.models import Scope, User
from chatmeter.billing import details, profiles, purchases
from chatmeter.billing.documents import invoice_file
from chatmeter.billing.models import BillingProfile, Invoice
from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.support.accounts import new_account
from tests.support.cli import Operator
from tests.support.panel import new_panel

GOOD = {
    "name": "Łódź Trading Sp. z o.o.",
    "address": "ul. Piotrkowska 1\n90-001 Łódź\nPolska",
    "tax_id": "PL 123-456-78.90/1",
}
BAD = [
    ({"name": "x" * 201}, "billing name"),
    ({"name": "two\nlines"}, "billing name"),
    ({"address": "y" * 501}, "billing address"),
    ({"address": "\n".join("line" for _ in range(7))}, "billing address"),
    ({"tax_id": "FR#123"}, "tax id"),
    ({"tax_id": "9" * 65}, "tax id"),
    ({"tax_id": "ÅÄÖ123"}, "tax id"),
]


# --- helpers --------------------------------------------------------------------------


def api(ctx: Context, account_id: int, scope: Scope = Scope.ALL) -> TestClient:
    with ctx.db.uow() as uow:
        _, key = keys.issue(
            uow.session, account_id=account_id, name="test", scope=scope, now=ctx.clock.now()
        )
        uow.commit()
    return TestClient(create_app(ctx), headers={"Authorization": f"Bearer {key}"})


def stored(ctx: Context, account_id: int) -> dict[str, str]:
    with ctx.db.read() as session:
        return details.read(session, account_id=account_id).as_dict()


def invoice_text(ctx: Context, account_id: int, *, newest: bool = False) -> str:
    """The text of the account's first invoice (or its newest) as its PDF shows it."""
    order = Invoice.id.desc() if newest else Invoice.id
    with ctx.db.read() as session:
        invoice = session.scalars(
            select(Invoice).where(Invoice.account_id == account_id).order_by(order)
        ).first()
        assert invoice is not None
        found = invoice_file(
            session, ctx.settings, account_id=account_id, invoice_id=invoice.id, receipt=False
        )
    document = pdfium.PdfDocument(found.content)
    try:
        textpage = document[0].get_textpage()
        return " ".join(textpage.get_text_range().split())
    finally:
        document.close()


def panel_account(ctx: Context) -> int:
    with ctx.db.read() as session:
        found = session.scalar(select(User.account_id))
    assert found is not None
    return found


def form_values(html: str) -> dict[str, str]:
    section = html[html.index('id="billing-details"') :]
    name = re.search(r'id="billing-name" name="name" type="text" value="([^"]*)"', section)
    address = re.search(r'name="address"[^>]*>([^<]*)</textarea>', section)
    tax_id = re.search(r'id="billing-tax-id" name="tax_id" type="text" value="([^"]*)"', section)
    assert name and address and tax_id
    return {"name": name[1], "address": address[1], "tax_id": tax_id[1]}


# --- the API --------------------------------------------------------------------------


def test_the_api_reads_and_replaces_the_details(ctx: Context) -> None:
    account = new_account(ctx)
    client = api(ctx, account)
    assert client.get("/api/v1/billing/details").json() == {
        "name": "",
        "address": "",
        "tax_id": "",
        "updated_at": None,
    }
    saved = client.put(
        "/api/v1/billing/details",
        json={
            "name": "  Acme GmbH ",
            "address": "Hauptstr. 1\r\n10115 Berlin  \n",
            "tax_id": "DE123",
        },
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert (body["name"], body["address"], body["tax_id"]) == (
        "Acme GmbH",
        "Hauptstr. 1\n10115 Berlin",
        "DE123",
    )
    assert body["updated_at"].startswith("2026-11-15T12:00:00")
    assert client.get("/api/v1/billing/details").json() == body

    # PUT replaces: a field left out is emptied.
    assert client.put("/api/v1/billing/details", json={"name": "Acme"}).json()["tax_id"] == ""


def test_a_read_only_key_reads_but_cannot_change(ctx: Context) -> None:
    account = new_account(ctx)
    api(ctx, account).put("/api/v1/billing/details", json=GOOD)
    reader = api(ctx, account, Scope.READ)
    assert reader.get("/api/v1/billing/details").json()["name"] == GOOD["name"]
    refused = reader.put("/api/v1/billing/details", json={"name": "Someone else"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert stored(ctx, account) == GOOD


def test_each_account_sees_and_changes_only_its_own(ctx: Context) -> None:
    alice = new_account(ctx, email="alice@example.com")
    bob = new_account(ctx, email="bob@example.com")
    api(ctx, alice).put("/api/v1/billing/details", json=GOOD)
    assert api(ctx, bob).get("/api/v1/billing/details").json()["name"] == ""
    api(ctx, bob).put("/api/v1/billing/details", json={"name": "Bob Ltd"})
    assert stored(ctx, alice) == GOOD


@pytest.mark.parametrize(("change", "field"), BAD)
def test_the_api_refuses_bad_details_and_changes_nothing(
    ctx: Context, change: dict[str, str], field: str
) -> None:
    account = new_account(ctx)
    client = api(ctx, account)
    client.put("/api/v1/billing/details", json=GOOD)
    refused = client.put("/api/v1/billing/details", json=GOOD | change)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_input" and field in error["message"]
    assert stored(ctx, account) == GOOD


@pytest.mark.parametrize(
    "body",
    [{"name": 5}, {"name": None}, {"colour": "red"}, {"name": "a\u0000b"}, {"tax_id": ["x"]}],
)
def test_the_api_refuses_bodies_that_are_not_details(ctx: Context, body: dict[str, Any]) -> None:
    account = new_account(ctx)
    client = api(ctx, account)
    client.put("/api/v1/billing/details", json=GOOD)
    assert client.put("/api/v1/billing/details", json=body).status_code == 422
    assert stored(ctx, account) == GOOD


# --- the invoices ----------------------------------------------------------------------


def test_invoices_show_the_details_they_were_issued_with(ctx: Context) -> None:
    account = new_account(ctx, email="shop@example.com")
    purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    before = invoice_text(ctx, account)
    assert "BILLED TO example.com shop@example.com" in before  # the account's name
    assert "Tax ID" not in before.split("BILLED TO")[1]

    api(ctx, account).put("/api/v1/billing/details", json=GOOD)
    assert invoice_text(ctx, account) == before  # an issued invoice never changes

    purchases.purchase(ctx, account_id=account, packages=1, key="buy-2")
    after = invoice_text(ctx, account, newest=True)
    assert (
        "BILLED TO Łódź Trading Sp. z o.o. ul. Piotrkowska 1 90-001 Łódź Polska "
        "Tax ID: PL 123-456-78.90/1"
    ) in after
    assert "shop@example.com" not in after


def test_an_invoice_issued_before_parties_were_kept_shows_todays_details(ctx: Context) -> None:
    account = new_account(ctx, email="shop@example.com")
    purchases.purchase(ctx, account_id=account, packages=1, key="buy-1")
    with ctx.db.uow() as uow:  # as the migration leaves an invoice issued before it
        invoice = uow.session.scalars(select(Invoice).where(Invoice.account_id == account)).one()
        invoice.parties = None
        uow.commit()
    api(ctx, account).put("/api/v1/billing/details", json=GOOD)
    assert "BILLED TO Łódź Trading Sp. z o.o." in invoice_text(ctx, account)


def test_the_profile_is_made_once_by_racing_first_writers(ctx: Context) -> None:
    account = new_account(ctx)
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def first_write(number: int) -> None:
        try:
            barrier.wait()
            with ctx.db.uow() as uow:
                profiles.get_or_create(uow.session, account).card_brand = f"brand-{number}"
                uow.commit()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=first_write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with ctx.db.read() as session:
        count = session.scalar(select(func.count()).select_from(BillingProfile))
        profile = session.get(BillingProfile, account)
    assert count == 1 and profile is not None and profile.card_brand.startswith("brand-")


# --- the panel ---------------------------------------------------------------------------


def test_the_owner_edits_the_details_on_the_billing_page(ctx: Context) -> None:
    panel = new_panel(ctx)
    panel.sign_up()
    account = panel_account(ctx)
    page = panel.client.get("/panel/billing").text
    assert "Billing details" in page and 'action="/panel/billing/details"' in page
    assert form_values(page) == {"name": "", "address": "", "tax_id": ""}

    saved = panel.post("/panel/billing/details", GOOD, page="/panel/billing")
    assert saved.status_code == 303
    assert saved.headers["location"] == "/panel/billing?done=details#billing-details"
    assert stored(ctx, account) == GOOD
    page = panel.client.get("/panel/billing?done=details").text
    assert "Your billing details are saved." in page
    assert form_values(page) == GOOD


@pytest.mark.parametrize(("change", "field"), BAD)
def test_the_panel_refuses_bad_details_with_a_message(
    ctx: Context, change: dict[str, str], field: str
) -> None:
    panel = new_panel(ctx)
    panel.sign_up()
    account = panel_account(ctx)
    panel.post("/panel/billing/details", GOOD, page="/panel/billing")
    refused = panel.post("/panel/billing/details", GOOD | change, page="/panel/billing")
    assert refused.status_code == 422
    assert f"The {field} must be at most" in refused.text
    assert 'role="alert"' in refused.text
    assert form_values(refused.text) == GOOD | change  # as typed, to correct it
    assert stored(ctx, account) == GOOD


def test_the_panel_needs_the_forms_csrf_token(ctx: Context) -> None:
    panel = new_panel(ctx)
    panel.sign_up()
    account = panel_account(ctx)
    forged = panel.client.post(
        "/panel/billing/details", data=GOOD | {"csrf_token": "forged"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert stored(ctx, account) == {"name": "", "address": "", "tax_id": ""}


def test_a_member_reads_the_details_but_cannot_change_them(ctx: Context, tmp_path: Path) -> None:
    panel = new_panel(ctx)
    panel.sign_up()
    account = panel_account(ctx)
    panel.post("/panel/billing/details", GOOD, page="/panel/billing")
    with ctx.db.uow() as uow:
        user = uow.session.scalars(select(User)).one()
        user.role = "member"
        uow.commit()

    page = panel.client.get("/panel/billing").text
    assert 'action="/panel/billing/details"' not in page
    assert GOOD["name"] in page and GOOD["tax_id"] in page
    assert "Only the account's owner can change these." in page
    refused = panel.post("/panel/billing/details", {"name": "Mine now"}, page="/panel/billing")
    assert refused.status_code == 403
    assert "only the account&#39;s owner can change the billing details" in refused.text.lower()
    assert stored(ctx, account) == GOOD


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def operator(db_url: str, tmp_path: Path) -> Operator:
    return Operator(
        {
            "CHATMETER_DATABASE_URL": db_url,
            "CHATMETER_ENV": "test",
            "CHATMETER_DATA_DIR": str(tmp_path / "var"),
            "CHATMETER_NOW": "2026-11-15T12:00:00Z",
        },
        tmp_path,
    )


def test_the_operator_shows_and_changes_the_details(operator: Operator, ctx: Context) -> None:
    account = str(operator.json("accounts", "create", "--email", "shop@example.com")["account_id"])
    shown = operator.run("accounts", "billing-details", "--account", account)
    assert "(the account name and contact email)" in shown

    changed = operator.json(
        "accounts",
        "billing-details",
        "--account",
        account,
        "--name",
        GOOD["name"],
        "--address",
        "ul. Piotrkowska 1\\n90-001 Łódź\\nPolska",
        "--tax-id",
        GOOD["tax_id"],
    )
    assert changed == {"account_id": int(account)} | GOOD
    # Only the options given change.
    partly = operator.json("accounts", "billing-details", "--account", account, "--tax-id", "")
    assert partly == {"account_id": int(account)} | GOOD | {"tax_id": ""}
    text = operator.run("accounts", "billing-details", "--account", account)
    assert GOOD["name"] in text and "90-001 Łódź" in text

    failed = operator.invoke(
        "accounts", "billing-details", "--account", account, "--tax-id", "FR#1", code=1
    )
    assert "error: the tax id must be at most 64 characters" in failed.stderr
    assert stored(ctx, int(account)) == GOOD | {"tax_id": ""}
    missing = operator.invoke("accounts", "billing-details", "--account", "999", code=1)
    assert "no such account" in missing.stderr


def test_the_operator_writes_an_invoice_pdf(
    operator: Operator, ctx: Context, tmp_path: Path
) -> None:
    account = operator.json("accounts", "create", "--email", "shop@example.com")["account_id"]
    invoice = operator.json("tokens", "buy", "--account", str(account), "--packages", "2")
    target = tmp_path / "out.pdf"
    written = operator.json(
        "invoices", "pdf", "--account", str(account), "--invoice", str(invoice["id"]),
        "--receipt", "--output", str(target),
    )  # fmt: skip
    assert written == {"path": str(target), "bytes": target.stat().st_size}
    assert target.read_bytes().startswith(b"%PDF-")
    failed = operator.invoke(
        "invoices", "pdf", "--account", str(account + 1), "--invoice", str(invoice["id"]), code=1
    )
    assert "no such invoice" in failed.stderr
