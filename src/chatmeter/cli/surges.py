"""An account's surge alert settings, and the assistants surging today."""

from __future__ import annotations

from typing import Annotated

import typer

from chatmeter.cli.base import AccountOpt, JsonOpt, accounts_app, context, emit


@accounts_app.command("surge-alerts")
def accounts_surge_alerts(
    account: AccountOpt,
    multiple: Annotated[
        str | None,
        typer.Option(help="Alert above this multiple of an assistant's typical day (1.5–100)."),
    ] = None,
    minimum: Annotated[
        int | None, typer.Option(help="No alert below this many tokens today.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show an account's surge alert settings and today's surges, or change the settings."""
    from chatmeter.accounts import service as accounts
    from chatmeter.accounts.surge_settings import multiple_text
    from chatmeter.chat import surges

    with context() as ctx, ctx.db.uow() as uow:
        now = ctx.clock.now()
        if multiple is not None or minimum is not None:
            accounts.update_account(
                uow.session,
                account_id=account,
                now=now,
                surge_multiple=multiple,
                surge_min_tokens=minimum,
            )
            uow.commit()
        found = accounts.get_account(uow.session, account_id=account)
        data = {
            "account_id": account,
            "surge_multiple": found.surge_multiple_tenths / 10,
            "surge_min_tokens": found.surge_min_tokens,
            "surging_today": [
                {
                    "assistant_id": s.assistant_id,
                    "assistant_name": s.assistant_name,
                    "day": s.day.isoformat(),
                    "today_tokens": s.today_tokens,
                    "typical_tokens": s.typical_tokens,
                    "window": s.window,
                    "hour_tokens": s.hour_tokens,
                    "typical_hour_tokens": s.typical_hour_tokens,
                }
                for s in surges.find(uow.session, account=found, now=now)
            ],
        }
    emit(
        data,
        as_json,
        lambda d: "\n".join(
            [
                f"alert above   {multiple_text(round(d['surge_multiple'] * 10))}× "
                "an assistant's typical day",
                f"minimum       {d['surge_min_tokens']:,} tokens today",
            ]
            + [
                (
                    f"spiking       {s['assistant_name']}: {s['hour_tokens']:,} tokens in the "
                    f"last hour, typical busiest hour {s['typical_hour_tokens']:,}"
                    if s["window"] == "hour"
                    else f"surging       {s['assistant_name']}: {s['today_tokens']:,} tokens "
                    f"today, typical {s['typical_tokens']:,}"
                )
                for s in d["surging_today"]
            ]
        ),
    )
