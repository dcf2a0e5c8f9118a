"""Accounts for tests: opened with their subscription, given tokens, and spent from."""

from __future__ import annotations

from chatmeter.accounts import opening
from chatmeter.accounts import service as accounts
from chatmeter.billing import periods, subscriptions
from chatmeter.billing.models import Subscription
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, GrantSource
from chatmeter.notifications import balance_notices


def new_account(ctx: Context, *, email: str = "owner@example.com", timezone: str = "UTC") -> int:
    """Open an account as the operator does (balance, subscription, owner); return its id."""
    with ctx.db.uow() as uow:
        owner = opening.open_account(
            uow.session, settings=ctx.settings, email=email, timezone=timezone, now=ctx.clock.now()
        )
        uow.commit()
        return owner.account_id


def add_tokens(ctx: Context, account_id: int, amount: int, *, key: str | None = None) -> None:
    """A manual, non-expiring grant: the simplest way to give a test account tokens."""
    with ctx.db.uow() as uow:
        account = accounts.get_account(uow.session, account_id=account_id)
        ledger.grant(
            uow.session,
            account_id=account_id,
            amount=amount,
            source=GrantSource.ADJUSTMENT,
            key=key or f"test:{amount}:{ctx.clock.now()}",
            period=periods.period_of(ctx.clock.now(), account.timezone),
            now=ctx.clock.now(),
        )
        uow.commit()


def balance_of(ctx: Context, account_id: int) -> Balance:
    with ctx.db.read() as session:
        balance = session.get(Balance, account_id)
        assert balance is not None
        return balance


def subscription_of(ctx: Context, account_id: int) -> Subscription:
    with ctx.db.read() as session:
        return subscriptions.get_subscription(session, account_id=account_id)


def spend(ctx: Context, account_id: int, tokens: int, key: str) -> None:
    """A chat turn that uses all it reserved."""
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session, account_id=account_id, tokens=tokens, key=key, ttl_seconds=60, now=now
        )
        ledger.settle(
            uow.session,
            account_id=account_id,
            hold_id=hold.id,
            context=tokens,
            generation=0,
            now=now,
        )
        balance_notices.send_raised(uow.session, now=now)
        uow.commit()
