"""Turn the ledger's threshold notices into outbox emails with the real figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.billing import periods
from chatmeter.config import Settings
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import Balance
from chatmeter.ledger.thresholds import LOW_BALANCE_PERCENT, BalanceNotice, Notice
from chatmeter.notifications.outbox import enqueue
from chatmeter.webhooks import events as webhook_events
from chatmeter.webhooks.events import EventType


def account_figures(
    account: Account, balance: Balance | BalanceNotice, now: dt.datetime
) -> dict[str, Any]:
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


def send_raised(session: Session, *, now: dt.datetime, settings: Settings | None = None) -> None:
    """Queue the emails of the notices the ledger raised in this transaction so far.

    Whoever moves tokens calls this before committing: the ledger only raises them. The
    same call lets auto top-up see where each balance ended (``billing.topups``). With
    ``settings`` (whoever spends tokens has them), the below-20% email says when the
    tokens run out at the account's pace and what would make them last.
    """
    # Imported here: topups queues its own emails through this module.
    from chatmeter.billing import topups

    for notice in ledger.take_notices(session):
        queue(session, notice=notice, now=now, settings=settings)
    topups.note_levels(session, now=now)


def queue(
    session: Session, *, notice: BalanceNotice, now: dt.datetime, settings: Settings | None = None
) -> None:
    """The notice's email (low, depleted) and its event for the customer's webhooks."""
    account = session.get(Account, notice.account_id)
    assert account is not None
    period = notice.period or periods.period_of(now, account.timezone)
    context = account_figures(account, notice, now)
    _tell_webhooks(session, account=account, notice=notice, figures=context, now=now)
    if notice.notice == Notice.RESTORED:
        return  # no email: the depleted one said tokens bring the assistants back
    if notice.notice == Notice.LOW_BALANCE and settings is not None:
        context["forecast"] = _forecast(session, settings, account.id, now)
    enqueue(
        session,
        kind=notice.notice.value,
        dedupe_key=f"{notice.notice.value}:{account.id}:{period}:{notice.seq}",
        to=account.contact_email,
        context=context,
        now=now,
        account_id=account.id,
    )


WEBHOOK_EVENTS = {
    Notice.LOW_BALANCE: EventType.BALANCE_LOW,
    Notice.DEPLETED: EventType.BALANCE_DEPLETED,
    Notice.RESTORED: EventType.BALANCE_RESTORED,
}


def _tell_webhooks(
    session: Session,
    *,
    account: Account,
    notice: BalanceNotice,
    figures: dict[str, Any],
    now: dt.datetime,
) -> None:
    """``balance.low``, ``balance.depleted``, or ``balance.restored`` once after each
    ``balance.depleted`` (a grant to an account that had merely not bought yet, or whose
    unspent tokens expired just before its renewal, restores nothing it was told of)."""
    if notice.notice == Notice.RESTORED and (
        webhook_events.last_balance_event(session, account_id=account.id)
        != EventType.BALANCE_DEPLETED
    ):
        return
    data = {k: v for k, v in figures.items() if k not in ("account_name", "threshold_percent")}
    webhook_events.emit(
        session,
        account_id=account.id,
        type=WEBHOOK_EVENTS[notice.notice],
        key=f"{account.id}:{notice.seq}",
        data=data,
        now=now,
    )


def _forecast(
    session: Session, settings: Settings, account_id: int, now: dt.datetime
) -> str | None:
    """ "At your pace you will run out on 18 December; 2 more packages last until the 1st",
    or None with too little history to say."""
    from chatmeter.billing import runway

    return runway.email_sentence(
        runway.account_runway(session, settings=settings, account_id=account_id, now=now)
    )
