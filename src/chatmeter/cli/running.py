"""Running the product: the web app, the worker, migrations."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from chatmeter.cli.base import (
    app,
    context,
)
from chatmeter.context import Context
from chatmeter.ops.processes import check_metrics_dir
from chatmeter.telemetry.logs import configure as configure_logs

log = logging.getLogger("chatmeter.serve")

MAX_WEB_PROCESSES = 64  # far more than the cores of any machine one supervisor serves
# How long uvicorn's supervisor waits for a child to answer its ping, and for a new child
# (`systemctl reload`) to be ready. Its default, 5 s, is shorter than a child loading its
# models on a busy machine (imports that hold the interpreter for seconds): the
# supervisor would kill it as hung, and a reload would give up on it.
CHILD_HEALTHCHECK_SECONDS = 60

# --- running -------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    migrate_first: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply migrations before serving.")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Web processes sharing the port (1-64), each with its own models.",
            min=1,
            max=MAX_WEB_PROCESSES,
        ),
    ] = 1,
) -> None:
    """Serve the web app (and, unless CHATMETER_WORKER=none, the in-process worker)."""
    with context() as ctx:
        try:
            ctx.settings.check_listen_address(host)
            ctx.models.check_tokenizers(
                ctx.settings.openai_tokenizer, ctx.settings.openai_tokenizers
            )
            check_metrics_dir()
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        # Once, before any web process starts: several must not race to migrate.
        if migrate_first:
            from chatmeter.migrate import upgrade

            upgrade(ctx.settings.database_url)
        if ctx.settings.create_demo:
            from chatmeter.demo import ensure_demo

            ensure_demo(ctx, echo=typer.echo)
        if workers == 1:
            _serve_one(ctx, host, port)
        else:
            _serve_several(ctx, host, port, workers)


def _serve_one(ctx: Context, host: str, port: int) -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from chatmeter.chat.admission import warm_up
    from chatmeter.ops.collector import ready_to_serve
    from chatmeter.web.app import SERVER_OPTIONS, create_app

    # One log format for Chatmeter and uvicorn; the app logs each request itself,
    # with its request id (chatmeter.web.observability).
    configure_logs(ctx.settings.log_format, ctx.settings.log_level)
    try:
        warm_up(ctx)  # before the port opens: no visitor waits for a model to load
    except Exception as exc:
        # As a web process of several says it (chatmeter.web.app.from_environment), and
        # with the same status: systemd leaves the unit failed instead of restarting it.
        log.exception("the web process could not start: %s", exc)
        typer.echo(f"error: the models did not load: {exc}; the details are logged above", err=True)
        raise typer.Exit(STARTUP_FAILURE) from exc
    application = create_app(ctx, run_worker=ctx.settings.worker == "inprocess")
    ready_to_serve()  # what startup loaded is never scanned by the collector again
    uvicorn.run(
        application, host=host, port=port, log_config=None, access_log=False, **SERVER_OPTIONS
    )


def _serve_several(ctx: Context, host: str, port: int, workers: int) -> None:
    """uvicorn's supervisor here, ``workers`` children each building its own app
    (``chatmeter.web.app.from_environment``); see ``chatmeter.ops.processes``.

    The in-process worker, when configured, runs here in the parent, once however
    many children serve (and whichever of them is restarted); the children do not run
    it. The parent loads no model of its own unless the worker's training needs one.
    A child that could not start stops them all: exit ``STARTUP_FAILURE`` (3), not 0,
    for systemd to see (``chatmeter.ops.supervisor``).
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from chatmeter.ops import exposition, processes
    from chatmeter.ops.supervisor import Supervisor
    from chatmeter.web.app import SERVER_OPTIONS

    private_dir = processes.ensure_metrics_dir()
    folder = Path(exposition.multiprocess_dir() or "")
    configure_logs(ctx.settings.log_format, ctx.settings.log_level)
    if private_dir is not None:
        log.info("PROMETHEUS_MULTIPROC_DIR not set: the processes share %s", private_dir)
    sweeper = processes.DeadProcessSweeper(folder)
    sweeper.start()
    runner = None
    if ctx.settings.worker == "inprocess":
        from chatmeter.jobs.worker import Worker

        runner = Worker(ctx)
        runner.start()
    try:
        config = uvicorn.Config(
            "chatmeter.web.app:from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_worker_healthcheck=CHILD_HEALTHCHECK_SECONDS,
            log_config=None,
            access_log=False,
            **SERVER_OPTIONS,
        )
        # What uvicorn.run does for workers > 1, with a supervisor that reports a failure.
        supervisor = Supervisor(config, sockets=[config.bind_socket()])
        supervisor.run()
    finally:
        if runner is not None:
            runner.stop()
        sweeper.stop()
        processes.remove_private_dir(private_dir)
    if supervisor.failure is not None:
        typer.echo(f"error: {supervisor.failure}; its error is logged above", err=True)
        raise typer.Exit(STARTUP_FAILURE)


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
