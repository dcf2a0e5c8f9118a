"""Turn the ledger's threshold notices into outbox emails with the real figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods
from chatmeter.ledger.models import Balance
from chatmeter.ledger.thresholds import LOW_BALANCE_PERCENT, Notice
from chatmeter.notifications.outbox import enqueue


def account_figures(account: Account, balance: Balance, now: dt.datetime) -> dict[str, Any]:
    """The numbers every balance email shows, as the customer can check them."""
    period = balance.period or periods.period_of(now, account.timezone)
    renews_at = periods.ends_at(period, account.timezone)
    return {
        "account_name": account.name,
        "balance": balance.balance,
        "available": balance.available,
        "limit": balance.period_granted,
        "period": period,
        "renews_at": renews_at.isoformat(),
        "renews_on": renews_at.astimezone(periods.to_zone(account.timezone)).date().isoformat(),
        "timezone": account.timezone,
        "percent_left": (balance.balance * 100 // balance.period_granted)
        if balance.period_granted
        else 0,
        "threshold_percent": LOW_BALANCE_PERCENT,
    }


def queue(session: Session, *, balance: Balance, notice: Notice, now: dt.datetime) -> None:
    account = session.get(Account, balance.account_id)
    assert account is not None
    period = balance.period or periods.period_of(now, account.timezone)
    enqueue(
        session,
        kind=notice.value,
        dedupe_key=f"{notice.value}:{account.id}:{period}:{balance.notice_seq}",
        to=account.contact_email,
        context=account_figures(account, balance, now),
        now=now,
        account_id=account.id,
    )
