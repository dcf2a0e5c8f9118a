"""The tests' clock start, and contexts derived from a test's own."""

from __future__ import annotations

import datetime as dt
from typing import Any

from chatmeter.context import Context

START = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)


def derived(ctx: Context, **settings: Any) -> Context:
    """Another process's context on the same database and clock, some settings changed."""
    return Context(
        settings=ctx.settings.model_copy(update=settings),
        db=ctx.db,
        clock=ctx.clock,
        gateway=ctx.gateway,
    )
