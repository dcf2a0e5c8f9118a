"""The demo account created on first run, so a fresh install has something to show."""

from __future__ import annotations

import os
from collections.abc import Callable

from sqlalchemy import select

from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account
from chatmeter.billing import service as billing
from chatmeter.context import Context

DEMO_EMAIL = "demo@example.com"
DEMO_PACKAGES = 2


def ensure_demo(ctx: Context, *, echo: Callable[[str], None] = print) -> int:
    """Create the demo account with two packages unless it exists; returns its id."""
    with ctx.db.read() as session:
        existing = session.scalar(select(Account.id).where(Account.contact_email == DEMO_EMAIL))
    if existing is not None:
        return existing
    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        account = accounts.create_account(uow.session, email=DEMO_EMAIL, name="Demo Shop", now=now)
        billing.open_subscription(uow.session, account_id=account.id, settings=ctx.settings,
                                  now=now)
        key = accounts.issue_api_key(uow.session, account_id=account.id, now=now, name="demo")
        uow.commit()
    billing.purchase(ctx, account_id=account.id, packages=DEMO_PACKAGES, key="demo:first-run")
    key_file = ctx.settings.data_dir / "demo-api-key.txt"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    echo(f"Demo account {account.id} created ({DEMO_EMAIL}) with {DEMO_PACKAGES} packages.")
    echo(f"Its API key (also saved in {key_file}): {key}")
    return account.id
