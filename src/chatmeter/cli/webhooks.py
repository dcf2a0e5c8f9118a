"""An account's webhook endpoints: the same rules as the panel and the REST API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatmeter.cli.base import AccountOpt, JsonOpt, context, emit, webhooks_app
from chatmeter.db import MAX_ID

EndpointOpt = Annotated[
    int, typer.Option("--endpoint", help="The endpoint's id.", min=1, max=MAX_ID)
]
EventsOpt = Annotated[
    str | None,
    typer.Option(
        "--events", help="Comma-separated event types, or * for all (see `webhooks events`)."
    ),
]


def _line(e: dict[str, Any]) -> str:
    events = "all events" if e["events"] == ["*"] else ", ".join(e["events"])
    state = "on" if e["enabled"] else "off"
    line = f"{e['id']:>5}  {state:3}  {e['url']}  ({events})"
    if e["disabled_reason"]:
        line += f"\n       turned off {e['disabled_at']:%Y-%m-%d %H:%M} UTC: {e['disabled_reason']}"
    return line


@webhooks_app.command("events")
def webhooks_events(as_json: JsonOpt = False) -> None:
    """The event types an endpoint can receive."""
    from chatmeter.webhooks.events import DESCRIPTIONS, SUBSCRIBABLE

    data = [{"type": t.value, "description": DESCRIPTIONS[t]} for t in SUBSCRIBABLE]
    emit(data, as_json, lambda d: "\n".join(f"{e['type']:24} {e['description']}" for e in d))


@webhooks_app.command("list")
def webhooks_list(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """An account's endpoints."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.read() as session:
        data = [
            endpoints.endpoint_dict(e)
            for e in endpoints.list_endpoints(session, account_id=account)
        ]
    emit(data, as_json, lambda d: "\n".join(map(_line, d)) or "no webhook endpoints")


@webhooks_app.command("add")
def webhooks_add(
    account: AccountOpt,
    url: Annotated[str, typer.Option(help="The endpoint's https:// URL.")],
    events: EventsOpt = None,
    description: Annotated[str, typer.Option(help="A note for yourself.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register an endpoint and print its signing secret (shown this once)."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.uow() as uow:
        endpoint = endpoints.create(
            uow.session,
            account_id=account,
            url=url,
            events=events,
            description=description,
            allow_private=ctx.settings.webhook_allow_private_networks,
            now=ctx.clock.now(),
        )
        uow.commit()
        data = endpoints.endpoint_dict(endpoint, with_secret=True)
    emit(data, as_json, lambda d: f"{_line(d)}\nsigning secret (shown once): {d['secret']}")


@webhooks_app.command("update")
def webhooks_update(
    account: AccountOpt,
    endpoint: EndpointOpt,
    url: Annotated[str | None, typer.Option(help="A new https:// URL.")] = None,
    events: EventsOpt = None,
    description: Annotated[str | None, typer.Option(help="A new note.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Send events to it, or stop.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an endpoint's URL, event types or note, or turn it on or off."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.uow() as uow:
        found = endpoints.update(
            uow.session,
            account_id=account,
            endpoint_id=endpoint,
            allow_private=ctx.settings.webhook_allow_private_networks,
            now=ctx.clock.now(),
            url=url,
            events=events,
            description=description,
            enabled=enabled,
        )
        uow.commit()
        data = endpoints.endpoint_dict(found)
    emit(data, as_json, _line)


@webhooks_app.command("remove")
def webhooks_remove(account: AccountOpt, endpoint: EndpointOpt) -> None:
    """Remove an endpoint and its delivery log."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.uow() as uow:
        endpoints.remove(uow.session, account_id=account, endpoint_id=endpoint)
        uow.commit()
    typer.echo(f"removed endpoint {endpoint}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate(account: AccountOpt, endpoint: EndpointOpt, as_json: JsonOpt = False) -> None:
    """A new signing secret (shown this once); the old one also signs for 24 hours."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.uow() as uow:
        found = endpoints.rotate_secret(
            uow.session, account_id=account, endpoint_id=endpoint, now=ctx.clock.now()
        )
        uow.commit()
        data = endpoints.endpoint_dict(found, with_secret=True)
    emit(data, as_json, lambda d: f"signing secret (shown once): {d['secret']}")


@webhooks_app.command("test")
def webhooks_test(account: AccountOpt, endpoint: EndpointOpt) -> None:
    """Queue a test event for one endpoint; the worker delivers it."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.uow() as uow:
        event = endpoints.send_test(
            uow.session, account_id=account, endpoint_id=endpoint, now=ctx.clock.now()
        )
        uow.commit()
        typer.echo(f"queued test event {event.public_id}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    account: AccountOpt, endpoint: EndpointOpt, as_json: JsonOpt = False
) -> None:
    """An endpoint's delivery log, newest first."""
    from chatmeter.webhooks import endpoints

    with context() as ctx, ctx.db.read() as session:
        data = endpoints.deliveries(session, account_id=account, endpoint_id=endpoint)
    emit(data, as_json, lambda d: "\n".join(map(_delivery_line, d)) or "no deliveries")


def _delivery_line(r: dict[str, Any]) -> str:
    answer = r["last_error"] or (f"HTTP {r['last_status']}" if r["last_status"] else "")
    return (
        f"{r['id']:>6}  {r['status']:9}  {r['attempts']:>2} tries  "
        f"{r['event_type']:22} {r['event_id']}  {answer}"
    )
