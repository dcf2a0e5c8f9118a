"""An account's billing details, and its invoices and receipts as PDF files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatmeter.cli.base import AccountOpt, JsonOpt, accounts_app, context, emit, invoices_app
from chatmeter.db import MAX_ID


@accounts_app.command("billing-details")
def accounts_billing_details(
    account: AccountOpt,
    name: Annotated[
        str | None, typer.Option(help='Billing name on invoices ("" removes it).')
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Postal address; a newline or a written \\n separates its lines."),
    ] = None,
    tax_id: Annotated[str | None, typer.Option(help="Tax id, e.g. a VAT number.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an account's billing details, or change the ones given (the others stay)."""
    from chatmeter.accounts import service as accounts
    from chatmeter.billing import details

    with context() as ctx, ctx.db.uow() as uow:
        accounts.get_account(uow.session, account_id=account)  # not found: exit 1
        current = details.read(uow.session, account_id=account)
        if name is not None or address is not None or tax_id is not None:
            current = details.parse(
                name=current.name if name is None else name,
                address=current.address if address is None else address.replace("\\n", "\n"),
                tax_id=current.tax_id if tax_id is None else tax_id,
            )
            details.change(uow.session, account_id=account, new=current, now=ctx.clock.now())
            uow.commit()
        data = {"account_id": account} | current.as_dict()
    emit(
        data,
        as_json,
        lambda d: (
            f"billing name  {d['name'] or '(the account name and contact email)'}\n"
            + "address       "
            + ("\n              ".join(d["address"].splitlines()) or "-")
            + f"\ntax id        {d['tax_id'] or '-'}"
        ),
    )


@invoices_app.command("pdf")
def invoices_pdf(
    account: AccountOpt,
    invoice: Annotated[int, typer.Option("--invoice", min=1, max=MAX_ID, help="The invoice's id.")],
    receipt: Annotated[
        bool, typer.Option("--receipt", help="The receipt of a paid invoice instead.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", help="Where to write it (default: its name, e.g. CM-2026-000012.pdf)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an invoice, or a paid invoice's receipt, as a PDF file."""
    from chatmeter.billing.documents import invoice_file

    with context() as ctx, ctx.db.read() as session:
        found = invoice_file(
            session, ctx.settings, account_id=account, invoice_id=invoice, receipt=receipt
        )
    path = output if output is not None else Path(found.filename)
    path.write_bytes(found.content)
    emit(
        {"path": str(path), "bytes": len(found.content)},
        as_json,
        lambda d: f"wrote {d['path']} ({d['bytes']:,} bytes)",
    )
