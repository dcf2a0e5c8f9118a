"""Invoices and receipts as PDF downloads, and the billing details form on the billing page.

Its routes come before ``pages.billing``'s (``app.AREAS``): ``/billing/invoices/12.pdf``
would otherwise be read as the invoice page of an invoice called "12.pdf".

Anyone on the team downloads the account's invoices; only an owner changes the billing
details (members see them). Another account's invoice is the panel's "not found" page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from chatmeter.billing import details as billing_details
from chatmeter.billing.documents import invoice_file
from chatmeter.db import MAX_ID
from chatmeter.errors import Conflict, NotFound
from chatmeter.panel.deps import CheckedFormDep, Refusal, Viewer, ViewerDep, ctx_of, refused_by
from chatmeter.panel.pages.billing import billing_page
from chatmeter.panel.rendering import form_text, owner_only, render, typed_text

router = APIRouter(prefix="/panel", include_in_schema=False)

CHANGE_DETAILS = "change the billing details"
FIELDS = ("name", "address", "tax_id")


# --- PDFs --------------------------------------------------------------------------------


@router.get("/billing/invoices/{invoice_id}.pdf")
def invoice_pdf(request: Request, invoice_id: str, viewer: ViewerDep) -> Response:
    return _pdf(request, invoice_id, viewer, receipt=False)


@router.get("/billing/invoices/{invoice_id}/receipt.pdf")
def receipt_pdf(request: Request, invoice_id: str, viewer: ViewerDep) -> Response:
    return _pdf(request, invoice_id, viewer, receipt=True)


def _pdf(request: Request, invoice_id: str, viewer: Viewer, *, receipt: bool) -> Response:
    """The PDF as an attachment; anything that names no invoice of the viewer's account
    (another account's, the receipt of an invoice not paid) is the "not found" page."""
    ctx = ctx_of(request)
    plain = invoice_id.isascii() and invoice_id.isdigit() and len(invoice_id) < 19
    number = int(invoice_id) if plain else 0
    if not 1 <= number <= MAX_ID:
        return render(request, "not_found.html", viewer=viewer, status=404)
    try:
        with ctx.db.read() as session:
            found = invoice_file(
                session,
                ctx.settings,
                account_id=viewer.account_id,
                invoice_id=number,
                receipt=receipt,
            )
    except (NotFound, Conflict):
        return render(request, "not_found.html", viewer=viewer, status=404)
    return Response(
        found.content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# --- the billing details -------------------------------------------------------------------


def _details_refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    typed = {field: typed_text(refused, field, limit=2000) for field in FIELDS}
    return billing_page(
        request,
        refused.viewer,
        status=refused.status,
        details_error=refused.message,
        details_values=typed,
    )


@router.post("/billing/details", dependencies=[refused_by(_details_refused)])
def save_details(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer, CHANGE_DETAILS)
    new = billing_details.parse(**{field: form_text(form, field, limit=2000) for field in FIELDS})
    with ctx.db.uow() as uow:
        billing_details.change(
            uow.session, account_id=viewer.account_id, new=new, now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse("/panel/billing?done=details#billing-details", status_code=303)
