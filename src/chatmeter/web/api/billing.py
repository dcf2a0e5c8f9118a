"""Buying packages, the subscription and invoices."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from chatmeter.billing import cards, purchases, subscriptions
from chatmeter.billing.models import InvoiceStatus
from chatmeter.billing.summary import invoice_dict, list_invoices, subscription_summary
from chatmeter.web.deps import AccountDep, ContextDep
from chatmeter.web.schemas import CardOut, InvoiceOut, PurchaseIn, SubscriptionIn, SubscriptionOut

router = APIRouter(tags=["billing"])


@router.post(
    "/purchases",
    response_model=InvoiceOut,
    status_code=201,
    responses={
        202: {"description": "payment pending"},
        402: {"description": "payment_failed"},
        409: {"description": "idempotency_conflict"},
    },
)
def create_purchase(
    body: PurchaseIn,
    ctx: ContextDep,
    account_id: AccountDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Buy packages: on payment the tokens are added at once and the subscription grows.

    With Stripe, an account's first purchase answers 202 with ``pay_url``, Stripe's
    page where the owner pays and saves the card; the tokens come when Stripe confirms.
    """
    bought = purchases.start_purchase(
        ctx, account_id=account_id, packages=body.packages, key=idempotency_key
    )
    row = invoice_dict(bought.invoice) | {"pay_url": bought.pay_url}
    if bought.invoice.status != InvoiceStatus.PAID:
        return JSONResponse(InvoiceOut(**row).model_dump(mode="json"), status_code=202)
    return row


@router.get("/billing/card", response_model=CardOut | None)
def get_card(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any] | None:
    """The card the payment gateway keeps for renewals and purchases (null: none saved)."""
    with ctx.db.read() as session:
        card = cards.saved_card(session, account_id=account_id, gateway=ctx.gateway.name)
        if card is None:
            return None
        return {
            "brand": card.card_brand,
            "last4": card.card_last4,
            "exp_month": card.card_exp_month,
            "exp_year": card.card_exp_year,
        }


@router.get("/subscription", response_model=SubscriptionOut)
def get_subscription(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        return subscription_summary(
            session, settings=ctx.settings, account_id=account_id, now=ctx.clock.now()
        )


@router.patch("/subscription", response_model=SubscriptionOut)
def change_subscription(
    body: SubscriptionIn, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """Change the packages renewed each month; takes effect at the next renewal."""
    with ctx.db.uow() as uow:
        subscriptions.change_quantity(
            uow.session, account_id=account_id, packages=body.packages, now=ctx.clock.now()
        )
        uow.commit()
    return get_subscription(ctx, account_id)


@router.post("/subscription/cancel", response_model=SubscriptionOut)
def cancel_subscription(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """No more renewals; the tokens you have stay usable until the next 1st."""
    with ctx.db.uow() as uow:
        subscriptions.cancel(uow.session, account_id=account_id, now=ctx.clock.now())
        uow.commit()
    return get_subscription(ctx, account_id)


@router.get("/invoices", response_model=list[InvoiceOut])
def get_invoices(ctx: ContextDep, account_id: AccountDep) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        return [invoice_dict(i) for i in list_invoices(session, account_id=account_id)]
