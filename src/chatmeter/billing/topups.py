"""Auto top-up: buy packages with the saved card when the balance falls below a threshold,
at most ``monthly_cap`` times per calendar month of the account.

How a crossing becomes exactly one charge, however many chat turns cross at once:

1. Every ledger change leaves the account's balance in the session
   (``ledger.take_levels``). Before the change commits, ``note_levels`` (called by
   ``balance_notices.send_raised``, under the account's lock) re-arms an account that is
   back at or above its threshold, and wakes the worker when an armed one is below it.
   It writes nothing else: a visitor's turn pays for one primary-key read.
2. The ``auto-top-up`` job (``start_due``) finds the armed accounts below their
   threshold and, under each account's lock, disarms it and opens one invoice keyed
   ``topup:<month>:<n>``, n from 1 to the cap: the unique (account, key) constraint
   backs both the cap and the once. The invoice is priced with the settings the job
   has (the turn's transaction has none) and due at once (``next_attempt_at``), so a
   process that dies before charging it leaves it to the next run, or to the renewal
   job's retries. Being armed and below is itself the record that a top-up is due: a
   crash between the turn's commit and the job loses nothing.
3. The job charges it outside the lock (``charges.charge``). Paid: ``fulfil_topup``
   grants the tokens for this month only (they expire with it, like a purchase's, and
   never join the subscription). Declined: ``on_declined`` turns auto top-up off and
   emails why. Pending: it waits, and no second top-up starts while it does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods, subscriptions
from chatmeter.billing.invoices import account as get_account
from chatmeter.billing.invoices import format_cents, local_date, new_invoice
from chatmeter.billing.models import AutoTopUp, Invoice, InvoiceKind, InvoiceStatus
from chatmeter.config import Settings
from chatmeter.db import queue_work
from chatmeter.errors import InvalidInput
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance
from chatmeter.notifications import balance_notices
from chatmeter.notifications.outbox import enqueue

# A threshold above this is a typing slip, not a plan: a billion tokens.
MAX_THRESHOLD = 1_000_000_000
MIN_CAP, MAX_CAP = 1, 31
DEFAULT = {"enabled": False, "threshold": 1000, "packages": 1, "monthly_cap": 3}

THRESHOLD_MESSAGE = f"enter the threshold in tokens, a whole number from 0 to {MAX_THRESHOLD:,}"
CAP_MESSAGE = f"enter how many top-ups a month at most, a whole number from {MIN_CAP} to {MAX_CAP}"
ENABLED_MESSAGE = "enabled must be true or false"
# Invoices that wait for the gateway: while one does, no second top-up starts.
WAITING = (InvoiceStatus.OPEN, InvoiceStatus.PENDING)


@dataclass(frozen=True, slots=True)
class Choice:
    """What the owner chose; every entry point (API, CLI, panel) checks it with ``check``."""

    enabled: bool
    threshold: int
    packages: int
    monthly_cap: int


# --- the setting ---------------------------------------------------------------------


def _whole(value: object, low: int, high: int, message: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(message, field=field)
    return value


def check(*, enabled: object, threshold: object, packages: object, monthly_cap: object) -> Choice:
    """The one rule for a setting: threshold 0–1e9 tokens, packages as a purchase's,
    1–31 top-ups a month."""
    if not isinstance(enabled, bool):
        raise InvalidInput(ENABLED_MESSAGE, field="enabled")
    return Choice(
        enabled=enabled,
        threshold=_whole(threshold, 0, MAX_THRESHOLD, THRESHOLD_MESSAGE, "threshold"),
        packages=subscriptions.check_packages(packages),
        monthly_cap=_whole(monthly_cap, MIN_CAP, MAX_CAP, CAP_MESSAGE, "monthly_cap"),
    )


def parse_number(text: object, message: str, field: str) -> int:
    """A number as a person typed it in a form: digits, with thousands separators allowed."""
    if not isinstance(text, str):
        raise InvalidInput(message, field=field)
    digits = text.strip().replace(",", "").replace(" ", "")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        raise InvalidInput(message, field=field)
    return int(digits)


def current(session: Session, *, account_id: int) -> Choice:
    """The account's setting, or the defaults (off) if it never saved one."""
    row = session.get(AutoTopUp, account_id)
    if row is None:
        return Choice(**DEFAULT)  # type: ignore[arg-type]
    return Choice(row.enabled, row.threshold, row.packages, row.monthly_cap)


def configure(
    session: Session,
    *,
    account_id: int,
    now: dt.datetime,
    enabled: object = None,
    threshold: object = None,
    packages: object = None,
    monthly_cap: object = None,
) -> AutoTopUp:
    """Change the fields given (None keeps a field), checked as a whole (``check``).

    Saving arms it afresh: an account already below the threshold tops up at the job's
    next run, once.
    """
    ledger.lock_balance(session, account_id=account_id)
    was = current(session, account_id=account_id)
    choice = check(
        enabled=was.enabled if enabled is None else enabled,
        threshold=was.threshold if threshold is None else threshold,
        packages=was.packages if packages is None else packages,
        monthly_cap=was.monthly_cap if monthly_cap is None else monthly_cap,
    )
    row = session.get(AutoTopUp, account_id, populate_existing=True)
    if row is None:
        row = AutoTopUp(account_id=account_id)
        session.add(row)
    row.enabled = choice.enabled
    row.threshold = choice.threshold
    row.packages = choice.packages
    row.monthly_cap = choice.monthly_cap
    row.armed = True
    row.disabled_reason = None
    row.updated_at = now
    session.flush()
    if row.enabled:
        queue_work(session)  # below the threshold already: the job need not wait
    return row


def overview(
    session: Session, *, settings: Settings, account_id: int, now: dt.datetime
) -> dict[str, Any]:
    """The setting with what it did this month, as the API, the CLI and the panel show it."""
    account = get_account(session, account_id)
    row = session.get(AutoTopUp, account_id)
    choice = current(session, account_id=account_id)
    balance = session.get(Balance, account_id)
    assert balance is not None
    period = subscriptions.current_period(balance, account.timezone, now)
    disabled = row is not None and row.disabled_reason is not None
    return {
        "enabled": choice.enabled,
        "threshold": choice.threshold,
        "packages": choice.packages,
        "monthly_cap": choice.monthly_cap,
        "tokens_per_top_up": choice.packages * settings.package_tokens,
        "period": period,
        "used_this_month": used_in(session, account_id=account_id, period=period),
        "waiting": waiting(session, account_id=account_id),
        "disabled_reason": row.disabled_reason if row is not None else None,
        "disabled_at": row.updated_at if row is not None and disabled else None,
        "disabled_on": local_date(row.updated_at, account.timezone)
        if row is not None and disabled
        else None,
    }


def used_in(session: Session, *, account_id: int, period: str) -> int:
    """Top-ups started in ``period``, a declined one included: each takes one of the cap."""
    count = session.scalar(
        select(func.count(Invoice.id)).where(
            Invoice.account_id == account_id,
            Invoice.kind == InvoiceKind.TOPUP,
            Invoice.period == period,
        )
    )
    return int(count or 0)


def waiting(session: Session, *, account_id: int) -> bool:
    """Whether a top-up waits for its payment (the manual gateway, 3-D Secure)."""
    found = session.scalar(
        select(Invoice.id)
        .where(
            Invoice.account_id == account_id,
            Invoice.kind == InvoiceKind.TOPUP,
            Invoice.status.in_(WAITING),
        )
        .limit(1)
    )
    return found is not None


# --- the crossing, in the transaction that changed the balance ------------------------


# The settings of the accounts whose balance changed, read on every settle: Core
# statements built once, since a turn pays for them whether or not the account has
# auto top-up (an ORM query with its join cost a PostgreSQL reserve+settle pair a
# fifth of its client CPU; docs/benchmarks.md, "Ledger").
_TOPUPS = cast(Table, AutoTopUp.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_ENABLED = (
    select(
        _TOPUPS.c.account_id,
        _TOPUPS.c.threshold,
        _TOPUPS.c.armed,
        _TOPUPS.c.updated_at,
        _ACCOUNTS.c.timezone,
    )
    .join(_ACCOUNTS, _ACCOUNTS.c.id == _TOPUPS.c.account_id)
    .where(_TOPUPS.c.enabled.is_(True))
)
# A turn changes one account's balance (an IN list is expanded anew on each call).
_ENABLED_FOR_ONE = _ENABLED.where(_TOPUPS.c.account_id == bindparam("account"))
_ENABLED_FOR = _ENABLED.where(_TOPUPS.c.account_id.in_(bindparam("accounts", expanding=True)))
_ARM = (
    update(_TOPUPS)
    .where(_TOPUPS.c.account_id == bindparam("account"))
    .values(armed=True, updated_at=bindparam("now"))
)


def note_levels(session: Session, *, now: dt.datetime) -> None:
    """Re-arm the accounts back at their threshold; wake the worker for armed ones below it.

    Called with the account's lock held, before the change commits. A month that began
    since the account was disarmed arms it again: the cap is per month.
    """
    levels = ledger.take_levels(session)
    if not levels:
        return
    session.flush()  # the statements below see what the caller changed through the ORM
    sql = session.connection()
    if len(levels) == 1:
        rows = sql.execute(_ENABLED_FOR_ONE, {"account": next(iter(levels))}).all()
    else:
        rows = sql.execute(_ENABLED_FOR, {"accounts": list(levels)}).all()
    for row in rows:
        level = levels[row.account_id]
        armed = row.armed
        if level.balance >= row.threshold:
            rearm = not armed
        else:
            rearm = not armed and _disarmed_before(
                row.updated_at, row.timezone, level.period or "", now
            )
            if armed or rearm:
                queue_work(session)  # the auto-top-up job starts it once this commits
        if rearm:
            sql.execute(_ARM, {"account": row.account_id, "now": now})
            stale = session.identity_map.get(session.identity_key(AutoTopUp, row.account_id))
            if stale is not None:
                session.expire(stale)


def _disarmed_before(
    updated_at: dt.datetime | None, zone: str, period: str, now: dt.datetime
) -> bool:
    if updated_at is None:
        return True
    return periods.period_of(updated_at, zone) < max(period, periods.period_of(now, zone))


# --- the job: open the due top-ups --------------------------------------------------


def due_accounts(session: Session) -> list[int]:
    """Accounts armed and below their threshold: each owes one top-up."""
    return list(
        session.scalars(
            select(AutoTopUp.account_id)
            .join(Balance, Balance.account_id == AutoTopUp.account_id)
            .where(
                AutoTopUp.enabled.is_(True),
                AutoTopUp.armed.is_(True),
                Balance.available + Balance.reserved < AutoTopUp.threshold,
            )
            .order_by(AutoTopUp.account_id)
        )
    )


def due_invoices(session: Session, *, now: dt.datetime) -> list[int]:
    """Open top-up invoices due for a charge: new ones, and any whose charge was cut short."""
    return list(
        session.scalars(
            select(Invoice.id)
            .where(
                Invoice.kind == InvoiceKind.TOPUP,
                Invoice.status == InvoiceStatus.OPEN,
                Invoice.next_attempt_at <= now,
            )
            .order_by(Invoice.id)
        )
    )


def start(
    session: Session, *, settings: Settings, account_id: int, now: dt.datetime
) -> Invoice | None:
    """Under the account's lock: disarm it and open its top-up invoice, unless the month's
    cap is reached or a top-up already waits for its payment (then it only disarms)."""
    balance = ledger.lock_balance(session, account_id=account_id)
    row = session.get(AutoTopUp, account_id, populate_existing=True)
    if row is None or not row.enabled or not row.armed or balance.balance >= row.threshold:
        return None  # another worker was first, or tokens came meanwhile
    row.armed, row.updated_at = False, now
    if waiting(session, account_id=account_id):
        return None
    account = get_account(session, account_id)
    period = subscriptions.current_period(balance, account.timezone, now)
    used = used_in(session, account_id=account_id, period=period)
    if used >= row.monthly_cap:
        return None
    invoice = new_invoice(
        session,
        settings,
        account_id=account_id,
        key=f"topup:{period}:{used + 1}",
        kind=InvoiceKind.TOPUP,
        period=period,
        packages=row.packages,
        free_tokens=0,
        now=now,
    )
    invoice.next_attempt_at = now  # due at once: whoever charges due invoices charges it
    session.flush()
    return invoice


# --- the charge's outcome (called by ``billing.charges``) -------------------------------


def fulfil_topup(session: Session, *, account: Account, invoice: Invoice, now: dt.datetime) -> None:
    """The top-up is paid: its tokens at once, for this month only; the receipt."""
    balance = ledger.lock_balance(session, account_id=account.id)
    period = subscriptions.current_period(balance, account.timezone, now)
    from chatmeter.billing import charges  # charges calls this module back

    charges.grant_packages(session, account, invoice, period, now, memo="auto top-up")
    balance_notices.send_raised(session, now=now)  # re-arms it if the tokens lift it
    row = session.get(AutoTopUp, account.id)
    balance = ledger.lock_balance(session, account_id=account.id)
    enqueue(
        session,
        kind="topup_receipt",
        dedupe_key=f"topup_receipt:{invoice.id}",
        to=account.contact_email,
        now=now,
        account_id=account.id,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "packages": invoice.packages,
            "tokens": invoice.tokens,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            "threshold": row.threshold if row is not None else 0,
            "used": used_in(session, account_id=account.id, period=invoice.period),
            "cap": row.monthly_cap if row is not None else 0,
            "balance": balance.balance,
            "expires_on": local_date(periods.ends_at(period, account.timezone), account.timezone),
        },
    )


def on_declined(session: Session, *, account: Account, invoice: Invoice, now: dt.datetime) -> None:
    """A top-up's card was declined: auto top-up turns itself off, and the owner is told.

    Retrying a declined card every time the balance dips would only decline again; the
    owner turns it back on once the card is fixed.
    """
    row = session.get(AutoTopUp, account.id, populate_existing=True)
    reason = invoice.failure_reason or "declined"
    if row is not None:
        row.enabled = False
        row.armed = True
        row.disabled_reason = reason[:500]
        row.updated_at = now
    balance = ledger.lock_balance(session, account_id=account.id)
    enqueue(
        session,
        kind="topup_disabled",
        dedupe_key=f"topup_disabled:{invoice.id}",
        to=account.contact_email,
        now=now,
        account_id=account.id,
        context={
            "account_name": account.name,
            "invoice_number": invoice.number,
            "packages": invoice.packages,
            "tokens": invoice.tokens,
            "amount": format_cents(invoice.amount_cents),
            "currency": invoice.currency,
            "reason": reason,
            "balance": balance.balance,
        },
    )
