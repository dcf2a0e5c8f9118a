"""The monthly subscription: opened with the account, changed, cancelled, and each
month's grants.

These are steps of one transaction: they take a ``session`` and never commit;
the caller's unit of work does. Buying (``purchases``) and renewing
(``renewals``) call a payment gateway between two transactions, so they are
workflows of their own that run their units of work.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods, receipts
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.models import Subscription, SubscriptionStatus
from chatmeter.config import Settings
from chatmeter.errors import InvalidInput, NotFound
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance, GrantSource
from chatmeter.notifications import balance_notices

MIN_PACKAGES, MAX_PACKAGES = 1, 1000


def open_subscription(
    session: Session, *, account_id: int, settings: Settings, now: dt.datetime
) -> Subscription:
    """A new account's subscription: no packages yet, this month counted as renewed.

    The operator's free allowance for the current month is granted at once if the
    account's email is verified; otherwise when it is (``grant_free_allowance``).
    """
    account = get_account(session, account_id)
    period = periods.period_of(now, account.timezone)
    subscription = Subscription(
        account_id=account_id,
        quantity=0,
        status=SubscriptionStatus.ACTIVE,
        renewed_period=period,
        created_at=now,
    )
    session.add(subscription)
    ledger.start_period(session, account_id=account_id, period=period)
    grant_free_allowance(session, account_id=account_id, settings=settings, now=now)
    session.flush()
    return subscription


def free_allowance(settings: Settings, account: Account) -> int:
    """The free tokens a month brings this account: none until its email is verified,
    so that signing up again and again does not farm them."""
    return settings.free_tokens if account.email_verified_at is not None else 0


def grant_free_allowance(
    session: Session, *, account_id: int, settings: Settings, now: dt.datetime
) -> None:
    """This month's free tokens, if the account may have them and has not had them yet."""
    balance = ledger.lock_balance(session, account_id=account_id)
    account = get_account(session, account_id)
    amount = free_allowance(settings, account)
    if not amount:
        return
    period = current_period(balance, account.timezone, now)
    ledger.grant(
        session,
        account_id=account_id,
        amount=amount,
        source=GrantSource.FREE,
        key=f"free:{period}",
        period=period,
        now=now,
        expires_at=periods.ends_at(period, account.timezone),
        memo="free monthly allowance",
    )
    balance_notices.send_raised(session, now=now)


def get_subscription(session: Session, *, account_id: int) -> Subscription:
    subscription = session.get(Subscription, account_id)
    if subscription is None:
        raise NotFound("no such account", account_id=account_id)
    return subscription


PACKAGES_MESSAGE = f"enter a whole number of packages from {MIN_PACKAGES} to {MAX_PACKAGES:,}"


def check_packages(value: object) -> int:
    """A number of packages, or ``InvalidInput``: the one rule the API, the CLI and the
    panel apply. Only a whole number is one (``parse_packages`` reads a person's text)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(PACKAGES_MESSAGE, field="packages")
    if not MIN_PACKAGES <= value <= MAX_PACKAGES:
        raise InvalidInput(PACKAGES_MESSAGE, field="packages")
    return value


def parse_packages(value: object) -> int:
    """A number of packages as a person gave it: a form's digits or a number."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 7:
            raise InvalidInput(PACKAGES_MESSAGE, field="packages")
        value = int(text)
    return check_packages(value)


def change_quantity(
    session: Session, *, account_id: int, packages: int, now: dt.datetime
) -> Subscription:
    """Set the packages the next renewal grants and charges; this month is unchanged."""
    packages = check_packages(packages)
    ledger.lock_balance(session, account_id=account_id)
    subscription = get_subscription(session, account_id=account_id)
    if subscription.status == SubscriptionStatus.CANCELLED:
        subscription.status = SubscriptionStatus.ACTIVE
        subscription.cancelled_at = None
    subscription.next_quantity = None if packages == subscription.quantity else packages
    return subscription


def cancel(session: Session, *, account_id: int, now: dt.datetime) -> Subscription:
    """No further renewals; tokens already granted stay usable until the next 1st."""
    balance = ledger.lock_balance(session, account_id=account_id)
    subscription = get_subscription(session, account_id=account_id)
    if subscription.status == SubscriptionStatus.CANCELLED:
        return subscription
    account = get_account(session, account_id)
    subscription.status = SubscriptionStatus.CANCELLED
    subscription.cancelled_at = now
    receipts.subscription_cancelled(
        session, account=account, subscription=subscription, balance=balance, now=now
    )
    return subscription


def current_period(balance: Balance, zone: str, now: dt.datetime) -> str:
    """The month tokens bought now belong to: the local month, or the one the ledger has
    already entered if that is later (an account that moved its time zone west)."""
    return max(periods.period_of(now, zone), balance.period or "")


def begin_month(
    session: Session,
    account: Account,
    period: str,
    now: dt.datetime,
    *,
    free_tokens: int,
    packages: int = 0,
    package_tokens: int = 0,
    invoice_id: int | None = None,
    rollover_months: int = 0,
) -> None:
    """Expire last month's tokens (those not rolling over) and grant this month's, in that
    order, as one step. The packages' tokens stay usable ``rollover_months`` more months.

    The new month is entered first, so the expiry is not mistaken for running
    out: no "low" or "depleted" email for tokens that are about to be replaced.
    """
    expires_at = periods.ends_at(period, account.timezone)
    ledger.start_period(session, account_id=account.id, period=period)
    ledger.expire_grants(
        session,
        account_id=account.id,
        due_by=periods.starts_at(period, account.timezone),
        before_period=period,
        now=now,
    )
    if packages:
        last = periods.later(period, rollover_months)
        ledger.grant(
            session,
            account_id=account.id,
            amount=packages * package_tokens,
            source=GrantSource.RENEWAL,
            key=f"renewal:{period}",
            period=period,
            last_period=last if last != period else None,
            now=now,
            expires_at=periods.ends_at(last, account.timezone),
            invoice_id=invoice_id,
            memo=f"monthly renewal of {packages} packages",
        )
    if free_tokens:
        ledger.grant(
            session,
            account_id=account.id,
            amount=free_tokens,
            source=GrantSource.FREE,
            key=f"free:{period}",
            period=period,
            now=now,
            expires_at=expires_at,
            memo="free monthly allowance",
        )
    balance_notices.send_raised(session, now=now)
