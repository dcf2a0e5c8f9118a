"""The 20% and out-of-tokens emails under concurrent spending, delivered over real SMTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from chatmeter.context import Context
from chatmeter.errors import InsufficientTokens
from chatmeter.ledger import service as ledger
from chatmeter.notifications import balance_notices
from chatmeter.notifications.delivery import deliver_due
from chatmeter.notifications.mailers import SmtpMailer
from tests.support.accounts import new_account

from .smtp_server import SmtpServer

TURNS = 60  # more than the 50 turns of 100 tokens that 5,000 tokens pay for


def spend_concurrently(ctx: Context, account_id: int) -> int:
    """Reserve and settle 100-token turns from 8 threads until the tokens run out."""
    barrier = threading.Barrier(8)
    settled = 0
    lock = threading.Lock()

    def turn(n: int) -> None:
        nonlocal settled
        if n < 8:
            barrier.wait()
        try:
            with ctx.db.uow() as uow:
                hold = ledger.reserve(
                    uow.session,
                    account_id=account_id,
                    tokens=100,
                    key=f"turn-{n}",
                    ttl_seconds=60,
                    now=ctx.clock.now(),
                )
                uow.commit()
        except InsufficientTokens:
            return
        with ctx.db.uow() as uow:
            ledger.settle(
                uow.session,
                account_id=account_id,
                hold_id=hold.id,
                context=70,
                generation=30,
                now=ctx.clock.now(),
            )
            balance_notices.send_raised(uow.session, now=ctx.clock.now())
            uow.commit()
        with lock:
            settled += 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(turn, range(TURNS)))
    return settled


def subjects(server: SmtpServer) -> list[str]:
    return sorted(str(m["Subject"]) for m in server.inbox.messages)


def test_one_low_and_one_depleted_email_per_month(ctx: Context, smtp_server: SmtpServer) -> None:
    from chatmeter.billing import purchases

    account = new_account(ctx, email="owner@example.com")
    purchases.purchase(ctx, account_id=account, packages=1)
    assert spend_concurrently(ctx, account) == 50
    mailer = SmtpMailer(smtp_server.host, smtp_server.port)
    deliver_due(ctx.db, mailer=mailer, settings=ctx.settings, now=ctx.clock.now())
    deliver_due(ctx.db, mailer=mailer, settings=ctx.settings, now=ctx.clock.now())
    kinds = [m["Subject"] for m in smtp_server.inbox.messages]
    assert len(kinds) == 3, kinds  # the receipt, the 20% warning, the empty notice
    low = [m for m in smtp_server.inbox.messages if "is low" in str(m["Subject"])]
    empty = [m for m in smtp_server.inbox.messages if "run out" in str(m["Subject"]).lower()]
    assert len(low) == 1 and len(empty) == 1, kinds
    low_text = low[0].get_body(preferencelist=("plain",)).get_content()
    assert "900" in low_text and "5,000" in low_text and "2026-12-01" in low_text
    html = empty[0].get_body(preferencelist=("html",)).get_content()
    assert "/panel/billing?buy=1" in html
    assert all(m["To"] == "owner@example.com" for m in smtp_server.inbox.messages)


def test_emails_queued_while_smtp_is_down_arrive_once_it_is_back(
    ctx: Context, stopped_smtp_server: SmtpServer
) -> None:
    account = new_account(ctx)
    from chatmeter.billing import purchases

    purchases.purchase(ctx, account_id=account, packages=1)
    spend_concurrently(ctx, account)
    mailer = SmtpMailer(stopped_smtp_server.host, stopped_smtp_server.port, timeout=2)
    report = deliver_due(ctx.db, mailer=mailer, settings=ctx.settings, now=ctx.clock.now())
    assert report.sent == 0
    stopped_smtp_server.start()
    ctx.clock.advance(hours=1)
    for _ in range(3):
        deliver_due(ctx.db, mailer=mailer, settings=ctx.settings, now=ctx.clock.now())
    assert len(stopped_smtp_server.inbox.messages) == 3
