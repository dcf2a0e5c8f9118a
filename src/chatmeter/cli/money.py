"""Accounts, tokens, billing, invoices and the ledger."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from chatmeter.cli.base import (
    AccountOpt,
    JsonOpt,
    accounts_app,
    billing_app,
    context,
    emit,
    invoices_app,
    ledger_app,
    tokens_app,
)
from chatmeter.db import MAX_ID

# --- accounts ---------------------------------------------------------------------


@accounts_app.command("create")
def accounts_create(
    email: Annotated[str, typer.Option(help="Contact email, and the owner's sign-in.")],
    timezone: Annotated[
        str, typer.Option(help="IANA time zone for the renewal on the 1st.")
    ] = "UTC",
    name: Annotated[str, typer.Option(help="Business name (default: the email's domain).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Open an account: prints its id, an API key and the owner's set-password link
    (each shown only once; the link works once, for an hour)."""
    from chatmeter.accounts import opening, users
    from chatmeter.accounts import service as accounts

    with context() as ctx, ctx.db.uow() as uow:
        now = ctx.clock.now()
        owner = opening.open_account(
            uow.session, settings=ctx.settings, email=email, timezone=timezone, name=name, now=now
        )
        account = accounts.get_account(uow.session, account_id=owner.account_id)
        key = accounts.issue_api_key(uow.session, account_id=account.id, now=now)
        link, token = users.password_link(uow.session, user=owner, now=now)
        uow.commit()
        data = {
            "account_id": account.id,
            "email": account.contact_email,
            "timezone": account.timezone,
            "api_key": key,
            "set_password_url": f"{ctx.settings.base_url}{users.RESET_PAGE}?token={token}",
            "set_password_expires_at": link.expires_at.isoformat(),
        }
    emit(
        data,
        as_json,
        lambda d: (
            f"account {d['account_id']} created\napi key: {d['api_key']}\n"
            f"the owner ({d['email']}) chooses a password at (once, within an hour):\n"
            f"{d['set_password_url']}"
        ),
    )


@accounts_app.command("list")
def accounts_list(as_json: JsonOpt = False) -> None:
    """Every account with its balance."""
    from sqlalchemy import select

    from chatmeter.accounts.models import Account
    from chatmeter.ledger.models import Balance

    with context() as ctx, ctx.db.read() as session:
        rows = session.execute(
            select(Account, Balance)
            .join(Balance, Balance.account_id == Account.id)
            .order_by(Account.id)
        ).all()
        data = [
            {
                "account_id": a.id,
                "name": a.name,
                "email": a.contact_email,
                "timezone": a.timezone,
                "balance": b.balance,
            }
            for a, b in rows
        ]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['account_id']:>6}  {r['email']:<32} {r['timezone']:<20} "
                f"{r['balance']:>12,} tokens"
                for r in rows
            )
            or "no accounts"
        ),
    )


# --- tokens --------------------------------------------------------------------------


@tokens_app.command("balance")
def tokens_balance(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """Balance, reserved, this month's limit and the renewal date."""
    from chatmeter.billing.summary import balance_summary

    with context() as ctx, ctx.db.read() as session:
        data = balance_summary(session, account_id=account, now=ctx.clock.now()).as_dict()
    emit(
        data,
        as_json,
        lambda d: (
            f"balance   {d['balance']:>12,} tokens\n"
            f"available {d['available']:>12,}\n"
            f"reserved  {d['reserved']:>12,}\n"
            f"limit     {d['limit']:>12,} ({d['period']})\n"
            f"used      {d['used_this_month']:>12,} this month\n"
            f"renews    {d['renews_at']:%Y-%m-%d %H:%M} UTC\n"
            f"status    {'active' if d['active'] else 'inactive (out of tokens)'}"
        ),
    )


@tokens_app.command("buy")
def tokens_buy(
    account: AccountOpt,
    packages: Annotated[int, typer.Option(help="Packages to buy (1-1000).")],
    key: Annotated[
        str | None, typer.Option(help="Idempotency key; a retry buys nothing more.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Buy packages now: the tokens arrive on payment and renew monthly."""
    from chatmeter.billing import purchases
    from chatmeter.billing.summary import invoice_dict

    with context() as ctx:
        bought = purchases.start_purchase(ctx, account_id=account, packages=packages, key=key)
        data = invoice_dict(bought.invoice) | {"pay_url": bought.pay_url}
    emit(
        data,
        as_json,
        lambda d: (
            f"invoice {d['number']}: {d['packages']} packages = {d['tokens']:,} tokens, "
            f"{d['amount']} {d['currency']} - {d['status']}"
            + (f"\nthe owner pays it (and saves a card) at {d['pay_url']}" if d["pay_url"] else "")
        ),
    )


@tokens_app.command("adjust")
def tokens_adjust(
    account: AccountOpt,
    tokens: Annotated[int, typer.Option(help="Tokens to add (positive) or remove (negative).")],
    reason: Annotated[str, typer.Option(help="Why; kept in the ledger.")] = "manual adjustment",
    key: Annotated[str | None, typer.Option(help="Idempotency key for a grant.")] = None,
    expires: Annotated[
        bool, typer.Option("--expires/--no-expire", help="Added tokens expire at the next renewal.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Grant or remove tokens by hand (an operator's correction)."""
    import uuid

    from chatmeter.accounts import service as accounts
    from chatmeter.billing import periods
    from chatmeter.billing.summary import balance_summary
    from chatmeter.errors import InvalidInput
    from chatmeter.ledger import service as ledger
    from chatmeter.ledger.models import GrantSource
    from chatmeter.notifications import balance_notices

    with context() as ctx:
        if tokens == 0:
            raise typer.BadParameter("tokens must not be 0", param_hint="--tokens")
        with ctx.db.uow() as uow:
            now = ctx.clock.now()
            zone = accounts.get_account(uow.session, account_id=account).timezone
            period = periods.period_of(now, zone)
            if tokens > 0:
                ledger.grant(
                    uow.session,
                    account_id=account,
                    amount=tokens,
                    source=GrantSource.ADJUSTMENT,
                    key=key or f"adjust:{uuid.uuid4()}",
                    period=period,
                    now=now,
                    memo=reason,
                    expires_at=periods.ends_at(period, zone) if expires else None,
                )
            elif key is not None:
                raise InvalidInput("--key applies to grants only")
            else:
                ledger.debit(
                    uow.session,
                    account_id=account,
                    amount=-tokens,
                    period=period,
                    now=now,
                    memo=reason,
                )
            balance_notices.send_raised(uow.session, now=now, settings=ctx.settings)
            uow.commit()
        with ctx.db.read() as session:
            data = balance_summary(session, account_id=account, now=ctx.clock.now()).as_dict()
    emit(data, as_json, lambda d: f"balance is now {d['balance']:,} tokens")


# --- billing ---------------------------------------------------------------------------


@billing_app.command("renew")
def billing_renew(
    account: Annotated[
        int | None, typer.Option("--account", min=1, help="One account (default: every due one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the monthly renewal now (it renews only accounts whose month began)."""
    from chatmeter.billing import renewals
    from chatmeter.billing.summary import invoice_dict

    with context() as ctx:
        if account is None:
            data: dict[str, Any] = renewals.run_renewals(ctx)
        else:
            invoice = renewals.renew(ctx, account_id=account)
            data = {"invoice": invoice_dict(invoice) if invoice else None}
    emit(data, as_json, lambda d: json.dumps(d, default=str))


@billing_app.command("cancel")
def billing_cancel(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """Cancel the subscription: no more renewals; tokens stay usable until the 1st."""
    from chatmeter.billing import subscriptions
    from chatmeter.billing.summary import subscription_summary

    with context() as ctx:
        with ctx.db.uow() as uow:
            subscriptions.cancel(uow.session, account_id=account, now=ctx.clock.now())
            uow.commit()
        with ctx.db.read() as session:
            data = subscription_summary(
                session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
            )
    emit(
        data,
        as_json,
        lambda d: (
            f"subscription cancelled; tokens stay usable until {d['renews_at']:%Y-%m-%d %H:%M} UTC"
        ),
    )


@billing_app.command("auto-top-up")
def billing_auto_top_up(
    account: AccountOpt,
    on: Annotated[
        bool | None, typer.Option("--on/--off", help="Turn auto top-up on or off.")
    ] = None,
    below: Annotated[
        int | None, typer.Option("--below", help="Top up when the balance falls below N tokens.")
    ] = None,
    packages: Annotated[
        int | None, typer.Option("--packages", help="Packages each top-up buys (1-1000).")
    ] = None,
    cap: Annotated[
        int | None, typer.Option("--cap", help="At most N top-ups per calendar month (1-31).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show auto top-up, or change the options given (the others keep their values)."""
    from chatmeter.billing import topups

    with context() as ctx:
        if (on, below, packages, cap) != (None, None, None, None):
            with ctx.db.uow() as uow:
                topups.configure(
                    uow.session,
                    account_id=account,
                    now=ctx.clock.now(),
                    enabled=on,
                    threshold=below,
                    packages=packages,
                    monthly_cap=cap,
                )
                uow.commit()
        with ctx.db.read() as session:
            data = topups.overview(
                session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
            )
    emit(data, as_json, _auto_top_up_text)


def _auto_top_up_text(d: dict[str, Any]) -> str:
    if d["disabled_reason"]:
        state = f"off: turned off after a declined charge ({d['disabled_reason']})"
    else:
        state = "on" if d["enabled"] else "off"
    return (
        f"auto top-up {state}\n"
        f"buys      {d['packages']} packages ({d['tokens_per_top_up']:,} tokens)\n"
        f"below     {d['threshold']:,} tokens\n"
        f"this month {d['used_this_month']} of {d['monthly_cap']}"
        + (" (one waits for its payment)" if d["waiting"] else "")
    )


# --- invoices ------------------------------------------------------------------------------


@invoices_app.command("list")
def invoices_list(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """An account's invoices, newest first."""
    from chatmeter.billing.summary import invoice_dict, list_invoices

    with context() as ctx, ctx.db.read() as session:
        data = [invoice_dict(i) for i in list_invoices(session, account_id=account)]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['id']:>6}  {r['number']}  {r['kind']:<8} {r['period']}  "
                f"{r['packages']:>4} pkg  "
                f"{r['amount']:>10} {r['currency']}  {r['status']}"
                for r in rows
            )
            or "no invoices"
        ),
    )


@invoices_app.command("mark-paid")
def invoices_mark_paid(
    account: AccountOpt,
    invoice: Annotated[int, typer.Option("--invoice", min=1, max=MAX_ID, help="The invoice's id.")],
    reference: Annotated[str | None, typer.Option(help="Payment reference to record.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that a pending invoice was paid; its tokens are granted at once."""
    from chatmeter.billing import charges
    from chatmeter.billing.summary import invoice_dict

    with context() as ctx, ctx.db.uow() as uow:
        paid = charges.confirm_payment(
            uow.session,
            account_id=account,
            invoice_id=invoice,
            now=ctx.clock.now(),
            reference=reference or "manual",
        )
        uow.commit()
        data = invoice_dict(paid)
    emit(data, as_json, lambda d: f"invoice {d['number']} is {d['status']}")


@invoices_app.command("refund")
def invoices_refund(
    account: AccountOpt,
    invoice: Annotated[int, typer.Option("--invoice", min=1, max=MAX_ID, help="The invoice's id.")],
    as_json: JsonOpt = False,
) -> None:
    """Refund a paid invoice in full through its gateway (after a partial refund in Stripe's
    dashboard: the rest); its unspent tokens are removed."""
    from chatmeter.billing import refunds
    from chatmeter.billing.invoices import format_cents

    with context() as ctx:
        done = refunds.refund(ctx, invoice_id=invoice, account_id=account)
        data = {
            "invoice_id": done.invoice.id,
            "number": done.invoice.number,
            "refunded": format_cents(done.amount_cents),
            "currency": done.invoice.currency,
            "tokens_removed": done.tokens_removed,
        }
    emit(
        data,
        as_json,
        lambda d: (
            f"invoice {d['number']} refunded: {d['refunded']} {d['currency']}, "
            f"{d['tokens_removed']:,} unspent tokens removed"
        ),
    )


# --- ledger ----------------------------------------------------------------------------------


@ledger_app.command("verify")
def ledger_verify(
    account: Annotated[
        int | None, typer.Option("--account", min=1, help="One account (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute balances from the entries; exit 1 if anything differs."""
    from chatmeter.chat.caps import verify

    with context() as ctx, ctx.db.read() as session:
        reports = verify(session, account_id=account, now=ctx.clock.now())
    data = [
        {
            "account_id": r.account_id,
            "ok": r.ok,
            "available": r.available,
            "reserved": r.reserved,
            "problems": r.problems,
        }
        for r in reports
    ]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"account {r['account_id']}: " + ("ok" if r["ok"] else "; ".join(r["problems"]))
                for r in rows
            )
            or "no accounts"
        ),
    )
    if not all(r.ok for r in reports):
        raise typer.Exit(1)
