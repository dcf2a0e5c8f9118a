"""Billing months in the account's own time zone (``chatmeter.billing.periods``).

The promise: the balance renews on the 1st at 00:00 in the
account's time zone, never early. Everything about *when* a month begins and
ends comes from these four functions, so they are checked on fixed examples
in zones with awkward offsets and, as a property, for every zone and month.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatmeter.billing.periods import ends_at, later, next_period, parse, period_of, starts_at

UTC = dt.UTC
TINY = dt.timedelta(microseconds=1)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def previous_period(period: str) -> str:
    year, month = parse(period)
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return f"{year:04d}-{month:02d}"


def assert_first_instant(period: str, zone: str | ZoneInfo) -> None:
    """``starts_at`` is in the period, and the instant just before it is in the previous one."""
    start = starts_at(period, zone)
    assert start.utcoffset() == dt.timedelta(0)
    assert period_of(start, zone) == period, f"{zone} {period}: {start} is not in {period}"
    before = period_of(start - TINY, zone)
    assert before == previous_period(period), f"{zone} {period}: {start - TINY} is in {before}"


# --- next_period and parse -------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "following"),
    [
        ("2026-11", "2026-12"),
        ("2026-12", "2027-01"),
        ("2027-01", "2027-02"),
        ("1999-12", "2000-01"),
        ("0999-09", "0999-10"),
    ],
)
def test_next_period(period: str, following: str) -> None:
    """The month after, across year ends."""
    assert next_period(period) == following


@pytest.mark.parametrize(
    "bad",
    ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "2026-01-01", " 2026-01", "", "2026-1x"],
)
def test_a_malformed_period_is_refused(bad: str) -> None:
    """Only ``YYYY-MM`` with a month from 01 to 12 is a period."""
    with pytest.raises(ValueError):
        parse(bad)
    with pytest.raises(ValueError):
        next_period(bad)
    with pytest.raises(ValueError):
        starts_at(bad, "UTC")


@given(st.integers(1, 9998), st.integers(1, 12))
@settings(database=None)
def test_next_period_is_the_month_after(year: int, month: int) -> None:
    """For every month: the next one follows it, in order and as text."""
    period = f"{year:04d}-{month:02d}"
    following = next_period(period)
    assert following > period  # the text orders like the months
    assert previous_period(following) == period
    assert parse(following) == ((year + 1, 1) if month == 12 else (year, month + 1))


@given(st.integers(1, 9000), st.integers(1, 12), st.integers(0, 120))
@settings(database=None)
def test_later_is_next_period_that_many_times(year: int, month: int, months: int) -> None:
    """``later`` (a rollover's last month) is the month after, ``months`` times over."""
    period = f"{year:04d}-{month:02d}"
    expected = period
    for _ in range(months):
        expected = next_period(expected)
    assert later(period, months) == expected


@pytest.mark.parametrize(
    ("period", "months", "last"),
    [
        ("2026-11", 0, "2026-11"),
        ("2026-11", 1, "2026-12"),
        ("2026-11", 2, "2027-01"),
        ("2026-12", 12, "2027-12"),
        ("2026-01", 11, "2026-12"),
    ],
)
def test_later_examples(period: str, months: int, last: str) -> None:
    assert later(period, months) == last


# --- fixed examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "period", "start"),
    [
        ("UTC", "2026-12", utc(2026, 12, 1)),
        ("UTC", "2027-01", utc(2027, 1, 1)),
        # Auckland is UTC+13 in (southern) summer and UTC+12 in winter: the 1st
        # begins at 11:00 or 12:00 UTC on the previous day.
        ("Pacific/Auckland", "2026-12", utc(2026, 11, 30, 11)),
        ("Pacific/Auckland", "2027-01", utc(2026, 12, 31, 11)),
        ("Pacific/Auckland", "2026-07", utc(2026, 6, 30, 12)),
        ("Pacific/Auckland", "2026-04", utc(2026, 3, 31, 11)),  # DST ends on 5 April
        ("Pacific/Auckland", "2026-05", utc(2026, 4, 30, 12)),
        ("Pacific/Auckland", "2026-10", utc(2026, 9, 30, 11)),  # DST began on 27 September
        # Los Angeles: 08:00 UTC in winter (PST), 07:00 UTC in summer (PDT).
        ("America/Los_Angeles", "2026-12", utc(2026, 12, 1, 8)),
        ("America/Los_Angeles", "2026-04", utc(2026, 4, 1, 7)),
        ("America/Los_Angeles", "2026-03", utc(2026, 3, 1, 8)),  # DST starts on 8 March
        ("America/Los_Angeles", "2026-11", utc(2026, 11, 1, 7)),  # DST ends on 1 November, 02:00
        # Kolkata: UTC+5:30 all year, the 1st begins at 18:30 UTC the day before.
        ("Asia/Kolkata", "2026-12", utc(2026, 11, 30, 18, 30)),
        ("Asia/Kolkata", "2027-01", utc(2026, 12, 31, 18, 30)),
        ("Asia/Kathmandu", "2026-12", utc(2026, 11, 30, 18, 15)),  # UTC+5:45
        ("Pacific/Chatham", "2026-12", utc(2026, 11, 30, 10, 15)),  # UTC+13:45 in summer
        ("Pacific/Kiritimati", "2026-12", utc(2026, 11, 30, 10)),  # UTC+14
        ("Pacific/Pago_Pago", "2026-12", utc(2026, 12, 1, 11)),  # UTC-11
        # Havana leaves DST at 01:00 on Sunday 1 November 2026: midnight happens
        # twice; the month begins at the first one (04:00 UTC, still UTC-4).
        ("America/Havana", "2026-11", utc(2026, 11, 1, 4)),
    ],
)
def test_starts_at_examples(zone: str, period: str, start: dt.datetime) -> None:
    """The first instant of a month, in UTC, for zones with awkward offsets."""
    assert starts_at(period, zone) == start
    assert starts_at(period, ZoneInfo(zone)) == start  # a name or a ZoneInfo alike
    assert period_of(start, zone) == period
    assert period_of(start - dt.timedelta(seconds=1), zone) == previous_period(period)
    assert ends_at(previous_period(period), zone) == start


def test_asuncion_skipped_midnight_starts_october_at_the_jump() -> None:
    """Paraguay jumped from 00:00 (UTC-4) to 01:00 (UTC-3) on Sunday 1 October 2023.

    The 1st has no 00:00 there; October begins at the first instant that
    exists on the 1st, 01:00 local = 04:00 UTC. An instant before it is still
    September (23:xx local on the 30th), so renewing there would be early.
    """
    zone = "America/Asuncion"
    assert period_of(utc(2023, 10, 1, 3, 59), zone) == "2023-09"
    assert period_of(utc(2023, 10, 1, 4), zone) == "2023-10"
    assert starts_at("2023-10", zone) == utc(2023, 10, 1, 4)
    assert ends_at("2023-09", zone) == utc(2023, 10, 1, 4)


@pytest.mark.parametrize(
    ("instant", "zone", "period"),
    [
        (utc(2026, 11, 30, 10, 59, 59), "Pacific/Auckland", "2026-11"),
        (utc(2026, 11, 30, 11), "Pacific/Auckland", "2026-12"),
        (utc(2026, 12, 1, 7, 59, 59), "America/Los_Angeles", "2026-11"),
        (utc(2026, 12, 1, 8), "America/Los_Angeles", "2026-12"),
        (utc(2026, 4, 1, 6, 59, 59), "America/Los_Angeles", "2026-03"),
        (utc(2026, 4, 1, 7), "America/Los_Angeles", "2026-04"),
        (utc(2026, 11, 30, 18, 29, 59), "Asia/Kolkata", "2026-11"),
        (utc(2026, 11, 30, 18, 30), "Asia/Kolkata", "2026-12"),
        (utc(2026, 12, 31, 23, 59, 59), "UTC", "2026-12"),
        (utc(2027, 1, 1), "UTC", "2027-01"),
    ],
)
def test_period_of_examples(instant: dt.datetime, zone: str, period: str) -> None:
    """One second before local midnight on the 1st is still the old month."""
    assert period_of(instant, zone) == period


def test_period_of_reads_the_instant_not_its_offset() -> None:
    """The same instant written in another offset is in the same period."""
    instant = utc(2026, 11, 30, 18, 30)
    in_tokyo = instant.astimezone(ZoneInfo("Asia/Tokyo"))
    assert period_of(in_tokyo, "Asia/Kolkata") == period_of(instant, "Asia/Kolkata") == "2026-12"


def test_ends_at_is_the_next_start() -> None:
    """A month's tokens expire exactly when the next month begins."""
    for zone in ("UTC", "Pacific/Auckland", "America/Los_Angeles", "Asia/Kolkata"):
        for period in ("2026-01", "2026-03", "2026-10", "2026-12"):
            assert ends_at(period, zone) == starts_at(next_period(period), zone)
            assert ends_at(period, zone) > starts_at(period, zone)


def test_daylight_saving_moves_the_utc_start_by_an_hour() -> None:
    """In Los Angeles April begins at 07:00 UTC and December at 08:00 UTC."""
    april, december = (starts_at(p, "America/Los_Angeles") for p in ("2026-04", "2026-12"))
    assert (april.hour, december.hour) == (7, 8)


# --- properties -----------------------------------------------------------------

INTERESTING_ZONES = [
    "UTC",
    "Pacific/Auckland",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Apia",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Asia/Tehran",
    "Asia/Beirut",
    "America/Godthab",
    "Antarctica/Troll",
]


@settings(max_examples=500, deadline=None, database=None)
@given(st.sampled_from(INTERESTING_ZONES), st.integers(1971, 2199), st.integers(1, 12))
# Months whose midnight on the 1st was skipped by a daylight-saving jump: rare
# enough that random draws seldom hit them, so they are always tried.
@example("America/Havana", 2012, 4)
@example("Africa/Casablanca", 2009, 6)
@example("Asia/Beirut", 1992, 5)
@example("Australia/Lord_Howe", 1981, 3)
def test_starts_at_is_the_first_instant_of_the_period(zone: str, year: int, month: int) -> None:
    """In any zone, year and month: starts_at(p) is in p and one microsecond earlier is not."""
    period = f"{year:04d}-{month:02d}"
    assert_first_instant(period, zone)
    assert period_of(starts_at(period, zone) - dt.timedelta(minutes=1), zone) == previous_period(
        period
    )


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(INTERESTING_ZONES),
    st.datetimes(
        min_value=dt.datetime(1971, 1, 1),
        max_value=dt.datetime(2199, 12, 1),
        timezones=st.just(UTC),
    ),
)
def test_every_instant_lies_between_its_periods_start_and_end(
    zone: str, instant: dt.datetime
) -> None:
    """period_of(t) = p exactly when starts_at(p) <= t < ends_at(p)."""
    period = period_of(instant, zone)
    assert starts_at(period, zone) <= instant < ends_at(period, zone)


def _canonical_zones() -> list[str]:
    return sorted(
        z
        for z in zoneinfo.available_timezones()
        if not z.startswith(("posix/", "right/", "Etc/")) and z != "localtime"
    )


def test_every_zone_every_month_since_1970_starts_at_its_first_instant() -> None:
    """Exhaustive: all IANA zones, every month from 1970 to 2040.

    Daylight-saving jumps at midnight on a 1st happen (Asunción, Havana,
    Damascus, Amman, Casablanca, Cairo...), so this finds the months where
    ``starts_at`` lands outside its own period.
    """
    wrong = []
    for zone_name in _canonical_zones():
        zone = ZoneInfo(zone_name)
        for year in range(1970, 2041):
            for month in range(1, 13):
                period = f"{year:04d}-{month:02d}"
                start = starts_at(period, zone)
                if period_of(start, zone) != period or period_of(
                    start - TINY, zone
                ) != previous_period(period):
                    wrong.append(f"{zone_name} {period}: {start:%Y-%m-%d %H:%M} UTC")
    assert not wrong, f"{len(wrong)} months start at the wrong instant, e.g. {wrong[:8]}"
