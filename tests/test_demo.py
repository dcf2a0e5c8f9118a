"""The demo account a fresh install starts with."""

from __future__ import annotations

from sqlalchemy import func, select

from chatmeter.accounts.models import Account
from chatmeter.billing.summary import balance_summary
from chatmeter.context import Context
from chatmeter.demo import ensure_demo


def test_demo_account_is_created_once_with_two_packages(ctx: Context) -> None:
    printed: list[str] = []
    first = ensure_demo(ctx, echo=printed.append)
    second = ensure_demo(ctx, echo=printed.append)
    assert first == second
    key = (ctx.settings.data_dir / "demo-api-key.txt").read_text().strip()
    assert key.startswith("cm_") and any(key in line for line in printed)
    with ctx.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1
        summary = balance_summary(session, account_id=first, now=ctx.clock.now())
    assert (summary.balance, summary.limit, summary.active) == (10_000, 10_000, True)
