"""The gateway's hosted pages: paying an invoice there, saving a new card, the portal.

Each is a workflow like ``charges.charge``: the gateway is called outside any
transaction (no lock is held while Stripe answers), and what it answered is written
in a short one after. Paying on the hosted page leaves the invoice ``pending``; the
gateway's webhook (``billing.webhooks``) confirms it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from chatmeter.billing import cards
from chatmeter.billing.gateways import CheckoutRequest, Customer, HostedPage
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import locked_invoice
from chatmeter.billing.models import Invoice, InvoiceKind, InvoiceStatus
from chatmeter.errors import Conflict, NotFound
from chatmeter.ledger import service as ledger
from chatmeter.services import Basics


class HostedGateway(Protocol):
    """What a gateway with hosted pages offers beyond charges (``StripeGateway``)."""

    name: str

    def customer(self, customer: Customer) -> str: ...

    def checkout(self, request: CheckoutRequest) -> HostedPage: ...

    def open_page(self, reference: str) -> HostedPage | None: ...

    def close_page(self, reference: str) -> bool: ...

    def setup_page(
        self,
        *,
        customer: str,
        account_id: int,
        currency: str,
        success_url: str,
        cancel_url: str,
        idempotency_key: str,
    ) -> HostedPage: ...

    def portal(self, *, customer: str, return_url: str) -> str: ...


class Hosted(Basics, Protocol):
    @property
    def gateway(self) -> object: ...


@dataclass(frozen=True, slots=True)
class Started:
    invoice: Invoice
    url: str | None  # None: nothing to pay there (the invoice is paid, or no longer due)


def hosted(ctx: Hosted) -> HostedGateway | None:
    gateway = ctx.gateway
    if getattr(gateway, "hosted_checkout", False):
        return gateway  # type: ignore[return-value]
    return None


def needs_page(ctx: Hosted, *, account_id: int) -> bool:
    """True when this account's next payment must go through the hosted page (no saved card)."""
    gateway = hosted(ctx)
    if gateway is None:
        return False
    with ctx.db.read() as session:
        return cards.saved_card(session, account_id=account_id, gateway=gateway.name) is None


def pay_on_page(ctx: Hosted, *, account_id: int, invoice_id: int) -> Started:
    """The hosted page where the customer pays this invoice: the one already open, or a new one.

    Used for an account's first purchase and for a charge the bank wants the
    cardholder to confirm (3-D Secure), from the link in the email.
    """
    gateway = hosted(ctx)
    if gateway is None:
        raise Conflict("payments are not taken on a hosted page here")
    with ctx.db.read() as session:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None or invoice.account_id != account_id:
            raise NotFound("no such invoice", invoice_id=invoice_id)
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
            return Started(invoice, None)
        who = _customer(session, gateway, account_id)
        previous = invoice.checkout_reference
    if previous is not None:
        page = gateway.open_page(previous)
        if page is not None:
            return Started(invoice, page.url)
    customer = gateway.customer(who)
    base = ctx.settings.base_url.rstrip("/")
    page = gateway.checkout(
        CheckoutRequest(
            invoice_id=invoice.id,
            amount_cents=invoice.amount_cents,
            currency=invoice.currency,
            description=f"{invoice.tokens:,} Chatmeter tokens ({invoice.packages} packages)",
            customer=customer,
            success_url=f"{base}/panel/billing?paying={invoice.id}",
            cancel_url=f"{base}/panel/billing/invoices/{invoice.id}/cancelled",
            idempotency_key=f"invoice:{invoice.id}:checkout:{uuid.uuid4()}",
        )
    )
    with ctx.db.uow() as uow:
        invoice = locked_invoice(uow.session, invoice_id)
        cards.remember_customer(
            uow.session,
            account_id=account_id,
            gateway=gateway.name,
            customer=customer,
            now=ctx.clock.now(),
        )
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PENDING):
            uow.commit()
            return Started(invoice, None)
        invoice.status = InvoiceStatus.PENDING
        invoice.gateway = gateway.name
        invoice.checkout_reference = page.reference
        invoice.next_attempt_at = None
        uow.commit()
    return Started(invoice, page.url)


def abandon(ctx: Hosted, *, account_id: int, invoice_id: int) -> Invoice:
    """The customer left the hosted page without paying: close it, and drop a purchase.

    The page is closed at the gateway first, so a payment cannot complete after the
    invoice is void; a page already paid is left to its webhook.
    """
    gateway = hosted(ctx)
    with ctx.db.read() as session:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None or invoice.account_id != account_id:
            raise NotFound("no such invoice", invoice_id=invoice_id)
        reference = invoice.checkout_reference
    if gateway is None or reference is None or invoice.status != InvoiceStatus.PENDING:
        return invoice
    if not gateway.close_page(reference):
        return invoice  # already paid: the webhook brings the tokens
    with ctx.db.uow() as uow:
        invoice = locked_invoice(uow.session, invoice_id)
        if invoice.status == InvoiceStatus.PENDING and invoice.checkout_reference == reference:
            invoice.checkout_reference = None
            if invoice.gateway_reference is not None:
                pass  # a charge waiting for 3-D Secure stays payable from the emailed link
            elif invoice.kind == InvoiceKind.PURCHASE:
                invoice.status = InvoiceStatus.VOID
                invoice.failure_reason = "the payment page was left without paying"
            else:  # a renewal or top-up goes back to being charged on the saved card
                invoice.status = InvoiceStatus.OPEN
                invoice.next_attempt_at = ctx.clock.now() + dt.timedelta(
                    hours=ctx.settings.renewal_retry_hours
                )
        uow.commit()
    return invoice


def replace_card(ctx: Hosted, *, account_id: int) -> str:
    """The hosted page where the owner saves a new card; nothing is charged."""
    gateway = hosted(ctx)
    if gateway is None:
        raise Conflict("cards are not kept here: invoices are paid by hand")
    with ctx.db.read() as session:
        who = _customer(session, gateway, account_id)
    customer = gateway.customer(who)
    with ctx.db.uow() as uow:
        ledger.lock_balance(uow.session, account_id=account_id)  # the profile's one writer
        cards.remember_customer(
            uow.session,
            account_id=account_id,
            gateway=gateway.name,
            customer=customer,
            now=ctx.clock.now(),
        )
        uow.commit()
    base = ctx.settings.base_url.rstrip("/")
    page = gateway.setup_page(
        customer=customer,
        account_id=account_id,
        currency=ctx.settings.currency,
        success_url=f"{base}/panel/billing?card=saving",
        cancel_url=f"{base}/panel/billing",
        idempotency_key=f"account:{account_id}:setup:{uuid.uuid4()}",
    )
    return page.url


def _customer(session: Session, gateway: HostedGateway, account_id: int) -> Customer:
    """Who pays, as the gateway is told: the account, and its customer there if it has one."""
    account = get_account(session, account_id)
    return Customer(
        account_id=account_id,
        email=account.contact_email,
        name=account.name,
        reference=cards.customer_reference(session, account_id=account_id, gateway=gateway.name),
    )


def portal(ctx: Hosted, *, account_id: int) -> str:
    gateway = hosted(ctx)
    with ctx.db.read() as session:
        customer = (
            cards.customer_reference(session, account_id=account_id, gateway=gateway.name)
            if gateway is not None
            else None
        )
    if gateway is None or customer is None:
        raise Conflict("there is no payment account to manage yet: buy tokens first")
    return gateway.portal(
        customer=customer, return_url=f"{ctx.settings.base_url.rstrip('/')}/panel/billing"
    )
