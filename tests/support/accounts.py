"""Accounts for tests: opened with their subscription, given tokens, and spent from."""

from __future__ import annotations

from chatmeter.accounts import service as accounts
from chatmeter.billing import periods
from chatmeter.billing import service as billing
from chatmeter.billing.models import Subscription
from chatmeter.context import Context
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, GrantSource


def new_account(ctx: Context, *, email: str = "owner@example.com", timezone: str = "UTC") -> int:
    """Create an account with its balance and subscription; return its id."""
    with ctx.db.uow() as uow:
        account = accounts.create_account(
            uow.session, email=email, timezone=timezone, now=ctx.clock.now()
        )
        billing.open_subscription(
            uow.session, account_id=account.id, settings=ctx.settings, now=ctx.clock.now()
        )
        uow.commit()
        return account.id


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
        return billing.get_subscription(session, account_id=account_id)


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
        uow.commit()
