"""The runway forecast of an account and the launch estimate of an assistant."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatmeter.cli.base import AccountOpt, JsonOpt, assistants_app, context, emit, tokens_app
from chatmeter.db import MAX_ID


@tokens_app.command("forecast")
def tokens_forecast(account: AccountOpt, as_json: JsonOpt = False) -> None:
    """When the tokens run out at the recent pace, and what would make them last."""
    from chatmeter.billing.runway import account_runway, runway_dict

    with context() as ctx, ctx.db.read() as session:
        result = account_runway(
            session, settings=ctx.settings, account_id=account, now=ctx.clock.now()
        )
    emit(runway_dict(result), as_json, _forecast_text)


def _forecast_text(d: dict[str, Any]) -> str:
    lines = [d["summary"], ""]
    if d["status"] == "ok":
        runs_out = d["runs_out_on"] or f"after the renewal on {d['renews_on']}"
        lines += [
            f"pace                {d['pace']:>12,} tokens a day",
            f"available           {d['available']:>12,}",
            f"runs out on         {runs_out!s:>12}",
            f"needed to renewal   {d['tokens_until_renewal']:>12,} (renews {d['renews_on']})",
            f"packages to last    {d['packages_to_last']:>12,}",
            f"a month like last   {d['month_tokens']:>12,} tokens = {d['month_packages']} packages",
            "",
        ]
    lines += ["spent by local day:"] + [f"  {r['day']}  {r['tokens']:>10,}" for r in d["daily"]]
    lines.append(f"  today       {d['spent_today']:>10,} so far")
    return "\n".join(lines)


@assistants_app.command("estimate")
def assistants_estimate(
    account: AccountOpt,
    assistant: Annotated[
        int, typer.Option("--assistant", min=1, max=MAX_ID, help="The assistant's id.")
    ],
    conversations_per_day: Annotated[
        int,
        typer.Option(
            "--conversations-per-day", min=1, max=1_000_000, help="Expected conversations a day."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Tokens a month and packages for an assistant at the conversations a day expected."""
    from chatmeter.assistants import estimate as launch
    from chatmeter.assistants import service as assistants

    with context() as ctx, ctx.db.read() as session:
        bot = assistants.get_assistant(session, account_id=account, assistant_id=assistant)
        data = launch.estimate(
            assistant=bot,
            seen=launch.measured(session, assistant=bot),
            conversations_per_day=conversations_per_day,
            package_tokens=ctx.settings.package_tokens,
            history_tokens=ctx.settings.chat_history_tokens,
            rate=ctx.rate_card.rate_for(bot.model or bot.provider),
        ).as_dict()
    emit(
        data,
        as_json,
        lambda d: (
            f"{d['conversations_per_day']:,} conversations a day × "
            f"{d['tokens_per_conversation']:,} tokens × 30 days = "
            f"{d['tokens_per_month']:,} tokens a month: {d['packages']:,} packages\n"
            f"{d['assumption']}"
        ),
    )
