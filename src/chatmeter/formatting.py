"""How numbers and dates read wherever a person sees them: the panel, the emails, the CLI.

English whatever the process locale (``%B`` would follow it), and one spelling of
each: a figure, a plural, a month, a local date, a local time.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def thousands(value: int) -> str:
    """5000 -> "5,000"; anything but an integer is a caller's bug."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return f"{value:,}"


def plural(count: int, noun: str) -> str:
    """1 -> "1 package", 3000 -> "3,000 packages"."""
    return f"{thousands(count)} {noun if count == 1 else noun + 's'}"


def month_name(period: str | None) -> str:
    """The period ``2026-11`` as ``November 2026``; nothing for no period."""
    if not period:
        return ""
    year, number = period.split("-")
    return f"{MONTHS[int(number) - 1]} {int(year)}"


def long_date(day: dt.date) -> str:
    """``5 November 2026``."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def short_date(day: dt.date, *, weekday: bool = False) -> str:
    """``5 Nov 2026``, or ``Thu 5 Nov 2026`` with the weekday."""
    text = f"{day.day} {MONTHS[day.month - 1][:3]} {day.year}"
    return f"{DAYS[day.weekday()]} {text}" if weekday else text


def local_date(instant: dt.datetime, zone: str) -> str:
    """An instant's date where the account is: ``5 November 2026``."""
    return long_date(instant.astimezone(ZoneInfo(zone)))


def local_time(instant: dt.datetime, zone: str) -> str:
    """An instant where the account is, to the minute: ``5 Nov 2026, 14:03``."""
    local = instant.astimezone(ZoneInfo(zone))
    return f"{short_date(local)}, {local:%H:%M}"


def utc_time(iso: str) -> str:
    """An ISO instant for a reader whose zone is not known: ``2026-11-15 12:00 UTC``."""
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
