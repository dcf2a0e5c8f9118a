"""An account's API keys: list, create (shown once), revoke."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatmeter.cli.base import AccountOpt, JsonOpt, context, emit, keys_app
from chatmeter.db import MAX_INT_ID


def _key_text(d: dict[str, Any]) -> str:
    used = (
        f"last used {d['last_used_at']:%Y-%m-%d %H:%M} UTC" if d["last_used_at"] else "never used"
    )
    state = "in use" if d["active"] else f"revoked {d['revoked_at']:%Y-%m-%d %H:%M} UTC"
    return f"{d['id']:>6}  {d['prefix']}…  {d['scope']:<4}  {d['name']:<24} {state}, {used}"


@keys_app.command("list")
def keys_list(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """An account's API keys, those in use first (never their secrets)."""
    from chatmeter.accounts import keys

    with context() as ctx, ctx.db.read() as session:
        data = [keys.key_dict(k) for k in keys.list_keys(session, account_id=account)]
    emit(data, as_json, lambda rows: "\n".join(map(_key_text, rows)) or "no API keys")


@keys_app.command("create")
def keys_create(
    account: AccountOpt,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. the integration.")],
    scope: Annotated[
        str, typer.Option(help="read (GET requests only) or all (everything).")
    ] = "read",
    as_json: JsonOpt = False,
) -> None:
    """Make an API key; prints it this once (only its hash is kept)."""
    from chatmeter.accounts import keys

    with context() as ctx, ctx.db.uow() as uow:
        key, secret = keys.issue(
            uow.session, account_id=account, name=name, scope=scope, now=ctx.clock.now()
        )
        uow.commit()
        data = keys.key_dict(key) | {"key": secret}
    emit(data, as_json, lambda d: f"api key {d['id']} ({d['scope']}) created\napi key: {d['key']}")


@keys_app.command("revoke")
def keys_revoke(
    account: AccountOpt,
    key: Annotated[
        int, typer.Option("--key", min=1, max=MAX_INT_ID, help="The key's id (keys list).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key: it stops working at once."""
    from chatmeter.accounts import keys

    with context() as ctx, ctx.db.uow() as uow:
        revoked = keys.revoke(uow.session, account_id=account, key_id=key, now=ctx.clock.now())
        uow.commit()
        data = keys.key_dict(revoked)
    emit(data, as_json, lambda d: f"api key {d['id']} revoked")
