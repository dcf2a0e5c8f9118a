"""Running the product: the web app, the worker, migrations."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from chatmeter.cli.base import (
    app,
    context,
)
from chatmeter.telemetry.logs import configure as configure_logs

# --- running -------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")
    ] = True,
) -> None:
    """Serve the web app (and, unless CHATMETER_WORKER=none, the in-process worker)."""
    import uvicorn

    from chatmeter.web.app import SERVER_OPTIONS, create_app

    with context() as ctx:
        try:
            ctx.settings.check_listen_address(host)
            ctx.models.check_tokenizers(ctx.settings.openai_tokenizer)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        if migrate_first:
            from chatmeter.migrate import upgrade

            upgrade(ctx.settings.database_url)
        if ctx.settings.create_demo:
            from chatmeter.demo import ensure_demo

            ensure_demo(ctx, echo=typer.echo)
        from chatmeter.chat.admission import warm_up

        warm_up(ctx)  # before the port opens: no visitor waits for a model to load
        application = create_app(ctx, run_worker=ctx.settings.worker == "inprocess")
        # One log format for Chatmeter and uvicorn; the app logs each request itself,
        # with its request id (chatmeter.web.observability).
        configure_logs(ctx.settings.log_format, ctx.settings.log_level)
        uvicorn.run(
            application,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            **SERVER_OPTIONS,
        )


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run due jobs once and exit.")] = False,
) -> None:
    """Run the background worker: renewals, hold expiry, email delivery."""
    from chatmeter.jobs.worker import Worker

    with context() as ctx:
        configure_logs(ctx.settings.log_format, ctx.settings.log_level)
        runner = Worker(ctx)
        if once:
            typer.echo(json.dumps(runner.tick(), default=str))
            return
        try:
            runner.run_forever()
        except KeyboardInterrupt:
            runner.stop()


@app.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the latest."""
    from chatmeter.migrate import upgrade

    with context() as ctx:
        upgrade(ctx.settings.database_url)
        typer.echo("database is up to date")
