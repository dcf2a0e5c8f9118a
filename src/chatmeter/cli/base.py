"""The command line's shared parts: the Typer apps, common options, the context, output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.db import MAX_INT_ID
from chatmeter.errors import ChatmeterError

app = typer.Typer(
    help="Chatmeter: AI assistants paid for with prepaid tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts_app = typer.Typer(help="Create and list accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="An account's API keys.", no_args_is_help=True)
tokens_app = typer.Typer(help="An account's tokens.", no_args_is_help=True)
billing_app = typer.Typer(help="Subscriptions and the monthly renewal.", no_args_is_help=True)
invoices_app = typer.Typer(help="Invoices.", no_args_is_help=True)
ledger_app = typer.Typer(help="The token ledger.", no_args_is_help=True)
jobs_app = typer.Typer(help="The named periodic jobs.", no_args_is_help=True)
outbox_app = typer.Typer(help="Queued and sent emails.", no_args_is_help=True)
assistants_app = typer.Typer(help="An account's assistants.", no_args_is_help=True)
webhooks_app = typer.Typer(help="An account's webhook endpoints.", no_args_is_help=True)
for sub, name in (
    (accounts_app, "accounts"),
    (keys_app, "keys"),
    (tokens_app, "tokens"),
    (billing_app, "billing"),
    (invoices_app, "invoices"),
    (ledger_app, "ledger"),
    (jobs_app, "jobs"),
    (outbox_app, "outbox"),
    (assistants_app, "assistants"),
    (webhooks_app, "webhooks"),
):
    app.add_typer(sub, name=name)

AccountOpt = Annotated[
    int, typer.Option("--account", help="The account's id.", min=1, max=MAX_INT_ID)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@contextmanager
def context() -> Iterator[Context]:
    """Settings from the environment; any Chatmeter error becomes a message and exit 1."""
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError: show what is wrong
        typer.echo(f"error: invalid configuration: {exc}", err=True)
        raise typer.Exit(1) from exc
    ctx = Context.from_settings(settings)
    try:
        yield ctx
    except ChatmeterError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    finally:
        ctx.close()


def emit(data: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(text(data))
