"""The periodic jobs and the email outbox."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from chatmeter.cli.base import (
    JsonOpt,
    context,
    emit,
    jobs_app,
    outbox_app,
)

# --- jobs ---------------------------------------------------------------------------------------


@jobs_app.command("list")
def jobs_list(as_json: JsonOpt = False) -> None:
    """The named jobs and how often the worker runs them."""
    from chatmeter.jobs.registry import JOBS

    data = [
        {"name": j.name, "every_seconds": j.every.total_seconds(), "help": j.help}
        for j in JOBS.values()
    ]
    emit(
        data,
        as_json,
        lambda rows: "\n".join(
            f"{r['name']:<12} every {r['every_seconds']:>5.0f}s  {r['help']}" for r in rows
        ),
    )


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="renewal, hold-expiry, outbox or training.")],
    as_json: JsonOpt = False,
) -> None:
    """Run one named job now, whatever its schedule."""
    from chatmeter.jobs.registry import JOBS

    if name not in JOBS:
        raise typer.BadParameter(f"unknown job {name!r}; choose from {', '.join(JOBS)}")
    with context() as ctx:
        data = JOBS[name].run(ctx)
    emit(data, as_json, lambda d: json.dumps(d, default=str))


# --- outbox -------------------------------------------------------------------------------


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option(help="pending, sent or dead.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Emails in the outbox, newest first."""
    from sqlalchemy import select

    from chatmeter.notifications.models import OutboxMessage, OutboxStatus

    if status is not None and status not in set(OutboxStatus):
        raise typer.BadParameter("choose pending, sent or dead", param_hint="--status")
    with context() as ctx, ctx.db.read() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status:
            query = query.where(OutboxMessage.status == status)
        data = [
            {
                "id": m.id,
                "kind": m.kind,
                "to": m.to_address,
                "status": m.status,
                "attempts": m.attempts,
                "last_error": m.last_error,
                "created_at": m.created_at,
                "sent_at": m.sent_at,
            }
            for m in session.scalars(query)
        ]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['id']:>6}  {r['status']:<8} {r['kind']:<24} {r['to']:<32} "
                f"attempts {r['attempts']}"
                + (f"  ({r['last_error']})" if r["last_error"] and r["status"] != "sent" else "")
                for r in rows
            )
            or "no emails"
        ),
    )


@outbox_app.command("requeue-dead")
def outbox_requeue_dead(as_json: JsonOpt = False) -> None:
    """Give emails that ran out of retries (e.g. after a long SMTP outage) another round."""
    from chatmeter.notifications.delivery import requeue_dead

    with context() as ctx, ctx.db.uow() as uow:
        count = requeue_dead(uow.session, now=ctx.clock.now())
        uow.commit()
    emit({"requeued": count}, as_json, lambda d: f"{d['requeued']} emails queued again")
