"""Invoices and receipts as PDF, and the billing details they are addressed with."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field, StrictStr

from chatmeter.billing import details as billing_details
from chatmeter.billing.documents import PdfFile, invoice_file
from chatmeter.billing.models import BillingProfile
from chatmeter.web.deps import AccountDep, ContextDep, IdPath
from chatmeter.web.schemas import Strict

router = APIRouter(tags=["billing"])

PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The PDF, as an attachment."},
    404: {"description": "not_found: no invoice of this account has this id"},
}
# Bounds of the body only: the rules (lengths, lines, characters) are billing.details'.
Loose = Annotated[StrictStr, Field(max_length=2000)]


class BillingDetailsIn(Strict):
    name: Loose = Field("", description="Billing name: at most 200 characters, one line.")
    address: Loose = Field("", description="Postal address: at most 500 characters, 6 lines.")
    tax_id: Loose = Field(
        "", description="Tax id (e.g. a VAT number): at most 64 of A-Z a-z 0-9 space . - /"
    )


class BillingDetailsOut(BaseModel):
    name: str
    address: str
    tax_id: str
    updated_at: dt.datetime | None


@router.get("/invoices/{invoice_id}/pdf", response_class=Response, responses=PDF_RESPONSE)
def get_invoice_pdf(invoice_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> Response:
    """The invoice as a PDF: seller, customer, period, packages, tax and total, status."""
    with ctx.db.read() as session:
        found = invoice_file(
            session, ctx.settings, account_id=account_id, invoice_id=invoice_id, receipt=False
        )
    return pdf_response(found)


@router.get(
    "/invoices/{invoice_id}/receipt.pdf",
    response_class=Response,
    responses=PDF_RESPONSE | {409: {"description": "conflict: the invoice is not paid"}},
)
def get_receipt_pdf(invoice_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> Response:
    """A paid invoice's receipt as a PDF, with its payment date."""
    with ctx.db.read() as session:
        found = invoice_file(
            session, ctx.settings, account_id=account_id, invoice_id=invoice_id, receipt=True
        )
    return pdf_response(found)


@router.get("/billing/details", response_model=BillingDetailsOut)
def get_billing_details(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        return details_dict(session.get(BillingProfile, account_id))


@router.put(
    "/billing/details",
    response_model=BillingDetailsOut,
    responses={422: {"description": "invalid_input: nothing is changed"}},
)
def put_billing_details(
    body: BillingDetailsIn, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """Replace the name, address and tax id on the invoices (a field left out is emptied)."""
    new = billing_details.parse(name=body.name, address=body.address, tax_id=body.tax_id)
    with ctx.db.uow() as uow:
        profile = billing_details.change(
            uow.session, account_id=account_id, new=new, now=ctx.clock.now()
        )
        answer = details_dict(profile)
        uow.commit()
    return answer


def pdf_response(found: PdfFile) -> Response:
    return Response(
        found.content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "Cache-Control": "private, no-store",
        },
    )


def details_dict(profile: BillingProfile | None) -> dict[str, Any]:
    if profile is None:
        return {"name": "", "address": "", "tax_id": "", "updated_at": None}
    return {
        "name": profile.billing_name,
        "address": profile.billing_address,
        "tax_id": profile.tax_id,
        "updated_at": profile.updated_at,
    }
