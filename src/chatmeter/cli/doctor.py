"""``chatmeter doctor``: check a configuration before it serves real customers."""

from __future__ import annotations

from typing import Annotated

import typer

from chatmeter.cli.base import JsonOpt, app, emit
from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.ops.findings import Finding, fail

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


@app.command()
def doctor(
    timeout: Annotated[
        float, typer.Option(help="Seconds each server may take to answer.", min=0.1, max=60)
    ] = 5.0,
    load_models: Annotated[
        bool, typer.Option("--models/--no-models", help="Load the models (takes seconds).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Check the settings and what they point at; exit 1 when something must be fixed."""
    from chatmeter.ops import doctor as checks

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError: the settings do not even load
        findings = [
            fail(
                "settings",
                f"the configuration does not load: {exc}",
                "fix the variables named above",
            )
        ]
    else:
        ctx = Context.from_settings(settings)
        try:
            findings = checks.examine(ctx, timeout=timeout, load_models=load_models)
        finally:
            ctx.close()
    healthy = checks.healthy(findings)
    emit(
        {"ok": healthy, "checks": [f.as_json() for f in findings]},
        as_json,
        lambda _: _text(findings, healthy),
    )
    if not healthy:
        raise typer.Exit(1)


def _text(findings: list[Finding], healthy: bool) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{MARKS[finding.status.value]}  {finding.check:<16} {finding.message}")
        if finding.fix and finding.status.value != "ok":
            lines.append(f"{'':22}fix: {finding.fix}")
    lines.append(
        "ready for customers" if healthy else "not ready: fix the FAIL lines above and run again"
    )
    return "\n".join(lines)
