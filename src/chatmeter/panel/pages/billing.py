"""Billing: the subscription and its invoices, changing the number of packages, cancelling,
a receipt; and "Get more tokens", whose window posts JSON from every page.

The rules are ``billing``'s: the panel hands it the posted text (``parse_packages``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from chatmeter.billing import cards, checkout, purchases, subscriptions, topups
from chatmeter.billing import details as billing_details
from chatmeter.billing.models import Invoice
from chatmeter.billing.summary import invoice_dict
from chatmeter.errors import InvalidInput
from chatmeter.formatting import local_date
from chatmeter.panel.deps import (
    BodyDep,
    CheckedFormDep,
    CheckedScriptDep,
    Refusal,
    ScriptViewerDep,
    Viewer,
    ViewerDep,
    ctx_of,
    refused_as_json,
    refused_by,
)
from chatmeter.panel.figures import billing_figures, dashboard_figures, money
from chatmeter.panel.rendering import owner_only, render, rollover_text

router = APIRouter(prefix="/panel", include_in_schema=False)

DONE = {
    "packages": "Your number of packages is changed. It takes effect at your next renewal.",
    "cancelled": "Your subscription is cancelled. Your remaining tokens stay usable until the 1st.",
    "abandoned": "You left the payment page without paying: nothing was charged.",
    "nothing-to-pay": "That invoice has nothing left to pay.",
    "auto-top-up": "Auto top-up is saved.",
    "details": "Your billing details are saved. Every invoice and receipt shows them.",
}


def _notice(done: str, rollover_months: int) -> str | None:
    notice = DONE.get(done)
    if notice is not None and done == "cancelled" and rollover_months:
        return notice.removesuffix(".") + (
            f"; those of your packages {rollover_text(rollover_months)} longer."
        )
    return notice


WINDOW_EXPIRED = "this window has expired; close it and try again"


def billing_page(
    request: Request, viewer: Viewer, *, status: int = 200, **context: Any
) -> HTMLResponse:
    ctx = ctx_of(request)
    gateway = checkout.hosted(ctx)
    with ctx.db.read() as session:
        plan = billing_figures(
            session,
            settings=ctx.settings,
            account_id=viewer.account_id,
            timezone=viewer.timezone,
            now=ctx.clock.now(),
        )
        card = (
            cards.saved_card(session, account_id=viewer.account_id, gateway=gateway.name)
            if gateway is not None
            else None
        )
        customer = (
            cards.customer_reference(session, account_id=viewer.account_id, gateway=gateway.name)
            if gateway is not None
            else None
        )
        paying = _own_invoice(session, viewer, request.query_params.get("paying", ""))
        auto_topup = topups.overview(  # _auto_topup.html
            session, settings=ctx.settings, account_id=viewer.account_id, now=ctx.clock.now()
        )
        details = billing_details.read(session, account_id=viewer.account_id)
    return render(
        request,
        "billing.html",
        auto_topup=auto_topup,
        viewer=viewer,
        active_nav="billing",
        plan=plan,
        status=status,
        notice=_notice(request.query_params.get("done", ""), ctx.settings.rollover_months),
        hosted_payments=gateway is not None,
        card=card,
        has_customer=customer is not None,
        card_saving=request.query_params.get("card") == "saving",
        paying=invoice_dict(paying) if paying is not None else None,
        billing_details=details.as_dict(),
        **context,
    )


def _figures(session: Session, request: Request, viewer: Viewer) -> dict[str, Any]:
    """The balance figures the page's script shows in place (the sidebar's, the dashboard's)."""
    ctx = ctx_of(request)
    return dashboard_figures(
        session,
        settings=ctx.settings,
        account_id=viewer.account_id,
        timezone=viewer.timezone,
        now=ctx.clock.now(),
    )


def _own_invoice(session: Session, viewer: Viewer, invoice_id: str) -> Invoice | None:
    """The viewer's account's invoice of that id, or None (another account's is None too)."""
    if not invoice_id.isdigit() or len(invoice_id) >= 19:
        return None
    return session.scalar(
        select(Invoice).where(
            Invoice.id == int(invoice_id), Invoice.account_id == viewer.account_id
        )
    )


@router.get("/billing")
def billing_overview(request: Request, viewer: ViewerDep) -> Response:
    return billing_page(request, viewer)


# --- the number of packages ----------------------------------------------------------


def _packages_refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    return billing_page(
        request,
        refused.viewer,
        status=refused.status,
        error=refused.message,
        packages_value=str(refused.form.get("packages", ""))[:20],
    )


@router.post("/billing/packages", dependencies=[refused_by(_packages_refused)])
def change_packages(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer)
    packages = subscriptions.parse_packages(form.get("packages", ""))
    with ctx.db.uow() as uow:
        subscriptions.change_quantity(
            uow.session, account_id=viewer.account_id, packages=packages, now=ctx.clock.now()
        )
        uow.commit()
    return RedirectResponse("/panel/billing?done=packages", status_code=303)


# --- cancelling ------------------------------------------------------------------------


def _cancel_page(request: Request, viewer: Viewer, **context: Any) -> Response:
    return render(request, "cancel.html", viewer=viewer, active_nav="billing", **context)


def _cancel_refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    return _cancel_page(request, refused.viewer, status=refused.status, error=refused.message)


@router.get("/billing/cancel")
def cancel_form(request: Request, viewer: ViewerDep) -> Response:
    return _cancel_page(request, viewer)


@router.post("/billing/cancel", dependencies=[refused_by(_cancel_refused)])
def cancel(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    ctx = ctx_of(request)
    owner_only(viewer)
    with ctx.db.uow() as uow:
        subscriptions.cancel(uow.session, account_id=viewer.account_id, now=ctx.clock.now())
        uow.commit()
    return RedirectResponse("/panel/billing?done=cancelled", status_code=303)


# --- a receipt -------------------------------------------------------------------------


@router.get("/billing/invoices/{invoice_id}")
def receipt(request: Request, invoice_id: str, viewer: ViewerDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        invoice = (
            session.scalar(
                select(Invoice).where(
                    Invoice.id == int(invoice_id), Invoice.account_id == viewer.account_id
                )
            )
            if invoice_id.isascii() and invoice_id.isdigit() and len(invoice_id) < 19
            else None
        )
        row = invoice_dict(invoice) if invoice is not None else None
    if row is None:
        return render(request, "not_found.html", viewer=viewer, status=404)
    row["amount_text"] = money(row["amount"], row["currency"])
    row["net_text"] = money(row["net"], row["currency"])
    row["tax_text"] = money(row["tax"], row["currency"])
    row["date"] = local_date(row["created_at"], viewer.timezone)
    row["paid_on"] = local_date(row["paid_at"], viewer.timezone) if row["paid_at"] else None
    refunded = invoice is not None and invoice.refunded_cents > 0
    row["refunded_text"] = money(row["refunded"], row["currency"]) if refunded else None
    row["refunded_on"] = local_date(row["refunded_at"], viewer.timezone) if refunded else None
    return render(request, "receipt.html", viewer=viewer, active_nav="billing", invoice=row)


# --- "Get more tokens" -------------------------------------------------------------------


@router.post("/tokens", dependencies=[refused_as_json])
def buy_tokens(
    request: Request, viewer: ScriptViewerDep, _csrf: CheckedScriptDep, raw: BodyDep
) -> Response:
    """Buy packages now; the same ``key`` (made when the window opened) never buys twice."""
    ctx = ctx_of(request)
    owner_only(viewer)
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:
        raise InvalidInput(subscriptions.PACKAGES_MESSAGE) from exc
    if not isinstance(body, dict):
        raise InvalidInput(subscriptions.PACKAGES_MESSAGE)
    packages = subscriptions.parse_packages(body.get("packages"))
    key = body.get("key")
    if not isinstance(key, str) or not 8 <= len(key) <= 100 or not key.isprintable():
        raise InvalidInput(WINDOW_EXPIRED)
    bought = purchases.start_purchase(
        ctx, account_id=viewer.account_id, packages=packages, key=f"panel:{key}"
    )
    invoice = bought.invoice
    with ctx.db.read() as session:
        figures = _figures(session, request, viewer)
    row = invoice_dict(invoice)
    return JSONResponse(
        {
            "invoice": {
                "id": row["id"],
                "number": row["number"],
                "status": row["status"],
                "packages": row["packages"],
                "tokens": row["tokens"],
                "amount": money(row["amount"], row["currency"]),
            },
            # The gateway's page where the first card payment is made (Stripe Checkout).
            "pay_url": bought.pay_url,
            "figures": figures,
        }
    )


# --- paying on the gateway's pages ----------------------------------------------------


@router.get("/billing/invoices/{invoice_id}/pay")
def pay_invoice(request: Request, invoice_id: str, viewer: ViewerDep) -> Response:
    """The link in "your bank asks you to confirm": the gateway's page for this invoice."""
    ctx = ctx_of(request)
    owner_only(viewer, "pay invoices")
    with ctx.db.read() as session:
        invoice = _own_invoice(session, viewer, invoice_id)
    if invoice is None:
        return render(request, "not_found.html", viewer=viewer, status=404)
    started = checkout.pay_on_page(ctx, account_id=viewer.account_id, invoice_id=invoice.id)
    if started.url is None:
        return RedirectResponse("/panel/billing?done=nothing-to-pay", status_code=303)
    return RedirectResponse(started.url, status_code=303)


@router.get("/billing/invoices/{invoice_id}/cancelled")
def payment_abandoned(request: Request, invoice_id: str, viewer: ViewerDep) -> Response:
    """Back from the gateway's page without paying."""
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        invoice = _own_invoice(session, viewer, invoice_id)
    if invoice is None:
        return render(request, "not_found.html", viewer=viewer, status=404)
    if viewer.is_owner:
        checkout.abandon(ctx, account_id=viewer.account_id, invoice_id=invoice.id)
    return RedirectResponse("/panel/billing?done=abandoned", status_code=303)


@router.get("/billing/invoices/{invoice_id}/state")
def invoice_state(request: Request, invoice_id: str, viewer: ScriptViewerDep) -> Response:
    """What the billing page asks while a payment is being confirmed; the figures with it."""
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        invoice = _own_invoice(session, viewer, invoice_id)
        if invoice is None:
            return JSONResponse(
                {"error": {"code": "not_found", "message": "no such invoice"}}, status_code=404
            )
        figures = _figures(session, request, viewer)
        row = invoice_dict(invoice)
    return JSONResponse(
        {
            "status": row["status"],
            "number": row["number"],
            "tokens": row["tokens"],
            "failure_reason": row["failure_reason"],
            "figures": figures,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/billing/card")
def replace_card(request: Request, viewer: ViewerDep, _form: CheckedFormDep) -> Response:
    """Save a new card on the gateway's page; later charges use it."""
    ctx = ctx_of(request)
    owner_only(viewer, "change the card")
    return RedirectResponse(
        checkout.replace_card(ctx, account_id=viewer.account_id), status_code=303
    )


@router.post("/billing/portal")
def payment_portal(request: Request, viewer: ViewerDep, _form: CheckedFormDep) -> Response:
    """The gateway's customer portal: payment history and cards."""
    ctx = ctx_of(request)
    owner_only(viewer, "manage payments")
    return RedirectResponse(checkout.portal(ctx, account_id=viewer.account_id), status_code=303)
