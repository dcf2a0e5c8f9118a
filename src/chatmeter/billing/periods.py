"""Billing months in an account's own time zone.

A period is the text ``YYYY-MM``. It starts at 00:00 on the 1st in the
account's zone; converted to UTC that can be the previous day (Auckland),
a half hour (Kolkata) or shift with daylight saving (Los Angeles).
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def period_of(instant: dt.datetime, zone: str | ZoneInfo) -> str:
    """The month that ``instant`` falls in, on the account's wall clock."""
    local = instant.astimezone(to_zone(zone))
    return f"{local.year:04d}-{local.month:02d}"


def parse(period: str) -> tuple[int, int]:
    match = _PERIOD.match(period)
    if not match:
        raise ValueError(f"not a period: {period!r}")
    return int(match[1]), int(match[2])


def next_period(period: str) -> str:
    year, month = parse(period)
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}"


def later(period: str, months: int) -> str:
    """The month ``months`` after ``period`` (0: itself)."""
    year, month = parse(period)
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def starts_at(period: str, zone: str | ZoneInfo) -> dt.datetime:
    """The UTC instant at which ``period`` begins: 00:00 local on its 1st.

    Where a zone skips midnight (a daylight-saving jump at 00:00), the month
    begins at the jump, the first instant that exists on the 1st: a skipped
    wall time with ``fold=0`` takes the offset from before the jump, which
    lands exactly there. A repeated midnight starts at its first occurrence.
    """
    year, month = parse(period)
    return dt.datetime(year, month, 1, tzinfo=to_zone(zone)).astimezone(dt.UTC)


def ends_at(period: str, zone: str | ZoneInfo) -> dt.datetime:
    """When the period's tokens expire: the start of the next one."""
    return starts_at(next_period(period), zone)


def to_zone(zone: str | ZoneInfo) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
