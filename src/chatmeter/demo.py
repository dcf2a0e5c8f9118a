"""The demo account created on first run, so a fresh install has something to show."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from chatmeter.accounts import opening
from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.billing import purchases
from chatmeter.config import Env
from chatmeter.context import Context
from chatmeter.training import service as training

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "chatmeter-demo"
DEMO_PACKAGES = 2
# The product's own help articles: the demo assistant answers questions about Chatmeter.
HELP_ARTICLES = Path(__file__).resolve().parents[2] / "docs" / "help"


def ensure_demo(ctx: Context, *, echo: Callable[[str], None] = print) -> int:
    """Create the demo account with two packages unless it exists; returns its id."""
    with ctx.db.read() as session:
        existing = session.scalar(select(Account.id).where(Account.contact_email == DEMO_EMAIL))
    if existing is not None:
        return existing
    # A known password is convenient on a developer's machine, never in production.
    production = ctx.settings.env is Env.PRODUCTION
    password = secrets.token_urlsafe(12) if production else DEMO_PASSWORD
    with ctx.db.uow() as uow:
        now = ctx.clock.now()
        # The operator's own account, with a password: the demo can sign in to the panel.
        owner = opening.open_account(
            uow.session,
            settings=ctx.settings,
            email=DEMO_EMAIL,
            password=password,
            name="Demo Shop",
            now=now,
        )
        account = accounts.get_account(uow.session, account_id=owner.account_id)
        key = accounts.issue_api_key(uow.session, account_id=account.id, now=now, name="demo")
        helper = assistants.create_assistant(
            uow.session,
            account_id=account.id,
            now=now,
            fields=AssistantFields(
                name="Help Center",
                widget_title="Chatmeter help",
                welcome_message="Hi! Ask me anything about Chatmeter: tokens, training, billing.",
                allowed_domains=["localhost", "127.0.0.1"],
                show_sources="passages",  # public help articles: visitors may read excerpts
            ),
        )
        articles = sorted(HELP_ARTICLES.glob("*")) if HELP_ARTICLES.is_dir() else []
        for article in articles:
            training.upload(
                uow.session,
                assistant=helper,
                filename=article.name,
                data=article.read_bytes(),
                max_bytes=ctx.settings.max_upload_bytes,
                now=now,
                quota=training.Quota.of(ctx.settings),
            )
        uow.commit()
        public_key = helper.public_key
    purchases.purchase(ctx, account_id=account.id, packages=DEMO_PACKAGES, key="demo:first-run")
    key_file = ctx.settings.data_dir / "demo-api-key.txt"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    echo(f"Demo account {account.id} created ({DEMO_EMAIL}) with {DEMO_PACKAGES} packages.")
    echo(f"Its API key (also saved in {key_file}): {key}")
    echo(f"Sign in at {ctx.settings.base_url}/panel/sign-in as {DEMO_EMAIL} / {password}")
    echo(
        f"Assistant 'Help Center' (public key {public_key}) is learning {len(articles)} "
        "help articles in the background."
    )
    return account.id
