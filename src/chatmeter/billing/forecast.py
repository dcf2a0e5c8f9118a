"""The runway forecast: when an account's tokens run out at its current pace.

Pure arithmetic over the tokens spent per local day (``billing.runway`` reads them
from the ledger). Every figure it returns can be checked by hand:

1. **History**: the complete local days before today, at most ``WINDOW_DAYS``,
   starting at the first day anything was spent (days before an account's first use
   say nothing about its pace). Fewer than ``MIN_HISTORY_DAYS``: no forecast, and it
   says so.
2. **Spikes**: a day above ``SPIKE_FACTOR`` × the median of the days with use counts
   as that much (a viral day is not a new pace).
3. **Weekdays**: with two weeks or more, each weekday's share of its week (every
   whole week weighs alike, so growth does not bias it) gives its factor; with less,
   every day is alike.
4. **Pace**: a straight line through the weekday-adjusted days, each weighted half as
   much as the day after it every ``HALF_LIFE_DAYS`` (recent days count more). Its
   value today is the level; its slope is the trend, which fades by ``TREND_DAMPING``
   a day ahead so that a month's growth is never extrapolated for ever.
5. **Projection**: day by day from today, the level (plus the faded trend) times the
   weekday's factor, never below zero; today expects only what the day has not
   spent yet. The run-out date is the day the projection's running total reaches the
   available balance; ``pace`` is the projection's average over the next 7 days.
6. **Until the renewal**: the projection's total up to the renewal day; the packages
   that make the tokens last are that total less the available balance, in whole
   packages, rounded up; the subscription that covers a month like the last one is
   the last 30 days' use (scaled up from a shorter history) less the free allowance,
   in whole packages, rounded up.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

WINDOW_DAYS = 28
MIN_HISTORY_DAYS = 7
WEEKDAY_HISTORY_DAYS = 14
SPIKE_FACTOR = 2.5
HALF_LIFE_DAYS = 5.0
GROWTH_SIGNIFICANCE = 2.0
MAX_GROWTH = 0.1  # 10% a day: doubling in a week
MAX_GROWTH_DAYS = 31
CHANGE_MIN_DAYS = 3
CHANGE_MAX_DAYS = 14
CHANGE_RATIO = 1.5
CHANGE_SIGNIFICANCE = 4.0
PACE_DAYS = 7
MONTH_DAYS = 30
MAX_PROJECTION_DAYS = 62  # the renewal is at most a month away; this bounds the work


class ForecastStatus(StrEnum):
    OK = "ok"
    NOT_ENOUGH_HISTORY = "not_enough_history"
    NO_USAGE = "no_usage"


@dataclass(frozen=True, slots=True)
class DaySpend:
    """Tokens the ledger recorded as spent on one local day."""

    day: dt.date
    tokens: int


@dataclass(frozen=True, slots=True)
class Forecast:
    status: ForecastStatus
    today: dt.date
    renews_on: dt.date
    available: int
    package_tokens: int
    # The complete days the forecast read, oldest first, and today's so far.
    history: tuple[DaySpend, ...]
    spent_today: int
    # Expected tokens a day, Monday first, at today's level; and day by day from
    # today until the run-out or the renewal (today: what is left of it).
    by_weekday: tuple[int, ...]
    projection: tuple[DaySpend, ...]
    pace: int
    runs_out_on: dt.date | None
    lasts_until_renewal: bool
    tokens_until_renewal: int
    packages_to_last: int
    month_tokens: int
    month_packages: int

    @property
    def ready(self) -> bool:
        """Whether there is a forecast to show (else: too little history)."""
        return self.status is not ForecastStatus.NOT_ENOUGH_HISTORY

    @property
    def history_days(self) -> int:
        return len(self.history)


def forecast(
    daily: Sequence[DaySpend],
    *,
    today: dt.date,
    spent_today: int,
    available: int,
    renews_on: dt.date,
    package_tokens: int,
    free_tokens: int = 0,
) -> Forecast:
    """The runway from ``daily`` (complete local days before ``today``, any order, gaps
    are days without use), the available balance and the renewal day."""
    history = _history(daily, today)
    available = max(0, available)
    spent_today = max(0, spent_today)
    values = [d.tokens for d in history]
    month = month_tokens(values) if len(history) >= MIN_HISTORY_DAYS else 0
    result = Forecast(
        status=ForecastStatus.NOT_ENOUGH_HISTORY,
        today=today,
        renews_on=renews_on,
        available=available,
        package_tokens=package_tokens,
        history=history,
        spent_today=spent_today,
        by_weekday=(0,) * 7,
        projection=(),
        pace=0,
        runs_out_on=None,
        lasts_until_renewal=True,
        tokens_until_renewal=0,
        packages_to_last=0,
        month_tokens=month,
        month_packages=packages_for(month - free_tokens, package_tokens),
    )
    if len(history) < MIN_HISTORY_DAYS:
        return result
    if not any(values) and not spent_today:
        return replace(result, status=ForecastStatus.NO_USAGE)
    model = fit([d.day for d in history], values, today)
    projection = project(model, today=today, spent_today=spent_today, renews_on=renews_on)
    needed = sum(d.tokens for d in projection if d.day < renews_on)
    runs_out = run_out_day(projection, available)
    lasts = runs_out is None or runs_out >= renews_on
    return replace(
        result,
        status=ForecastStatus.OK,
        by_weekday=tuple(
            round(model.expected(today + dt.timedelta(days=i), 0)) for i in _week(today)
        ),
        projection=tuple(projection),
        pace=round(sum(d.tokens for d in projection[1 : PACE_DAYS + 1]) / PACE_DAYS),
        runs_out_on=None if lasts else runs_out,
        lasts_until_renewal=lasts,
        tokens_until_renewal=needed,
        packages_to_last=packages_for(needed - available, package_tokens),
    )


@dataclass(frozen=True, slots=True)
class Model:
    """The fitted pace: ``level`` tokens a day today, growing by ``growth`` (a fraction)
    a day, and each weekday's factor (Monday first)."""

    level: float
    growth: float
    factors: tuple[float, ...]

    def expected(self, day: dt.date, ahead: int) -> float:
        """Tokens expected on ``day``, ``ahead`` days after today."""
        grown = math.exp(self.growth * min(ahead, MAX_GROWTH_DAYS))
        return self.level * grown * self.factors[day.weekday()]


def fit(days: Sequence[dt.date], values: Sequence[int], today: dt.date) -> Model:
    """The pace of a history (oldest first, at least ``MIN_HISTORY_DAYS`` long)."""
    factors = weekday_factors(days, despiked(values))
    adjusted: list[tuple[int, float]] = []  # (age in days, weekday-adjusted tokens)
    for day, value in zip(days, values, strict=True):
        factor = factors[day.weekday()]
        if factor > 0:  # a weekday without use says nothing about the level
            adjusted.append(((today - day).days, value / factor))
    cleaned = despiked([value for _, value in adjusted])
    points = [(age, value) for (age, _), value in zip(adjusted, cleaned, strict=True)]
    growth = growth_rate(points)
    # A change of pace is looked for in what the growth does not explain; once found,
    # only the days since count, and they are too few to show a growth of their own.
    since = change_point([(age, value * math.exp(growth * age)) for age, value in points])
    recent = [p for p in points if p[0] <= since] if since else points
    if since:
        growth = 0.0
    weights = [0.5 ** ((age - 1) / HALF_LIFE_DAYS) for age, _ in recent]
    total = sum(weights)
    if total <= 0:
        return Model(level=0.0, growth=0.0, factors=factors)
    level = sum(w * value for w, (_, value) in zip(weights, recent, strict=True)) / total
    mean_age = sum(w * age for w, (age, _) in zip(weights, recent, strict=True)) / total
    return Model(level=level * math.exp(growth * mean_age), growth=growth, factors=factors)


def despiked(values: Sequence[float]) -> list[float]:
    """A lone day above ``SPIKE_FACTOR`` × the median of the days with use counts as that
    median: one viral day is not a pace. Two such days in a row are kept (a new pace)."""
    used = [v for v in values if v > 0]
    if not used:
        return [0.0 for _ in values]
    median = statistics.median(used)
    high = [v > SPIKE_FACTOR * median for v in values]
    return [
        float(median)
        if high[i] and not (i > 0 and high[i - 1]) and not (i + 1 < len(high) and high[i + 1])
        else float(v)
        for i, v in enumerate(values)
    ]


def change_point(points: Sequence[tuple[int, float]]) -> int | None:
    """The age of the first day of a new pace, when the last ``CHANGE_MIN_DAYS`` to
    ``CHANGE_MAX_DAYS`` days differ from the days before by ``CHANGE_RATIO`` or more
    (both ways) and clearly (``CHANGE_SIGNIFICANCE`` standard errors): the pace then
    reads only the days since."""
    logs = [(age, math.log(value)) for age, value in points if value > 0]
    best: tuple[float, int] | None = None
    for since in range(CHANGE_MIN_DAYS, CHANGE_MAX_DAYS + 1):
        after = [y for age, y in logs if age <= since]
        before = [y for age, y in logs if age > since]
        if len(after) < CHANGE_MIN_DAYS or len(before) < CHANGE_MIN_DAYS:
            continue
        gap = statistics.fmean(after) - statistics.fmean(before)
        if abs(gap) < math.log(CHANGE_RATIO):
            continue
        spread = statistics.pvariance(after + before) or 1e-12
        score = abs(gap) / math.sqrt(spread * (1 / len(after) + 1 / len(before)))
        if score >= CHANGE_SIGNIFICANCE and (best is None or score > best[0]):
            best = (score, since)
    return best[1] if best else None


def weekday_factors(days: Sequence[dt.date], values: Sequence[float]) -> tuple[float, ...]:
    """Each weekday's median share of the 7 days around it (a centred week, so that
    growth does not favour the end of the week), scaled so that the seven average 1;
    all 1 below two weeks."""
    if len(values) < WEEKDAY_HISTORY_DAYS:
        return (1.0,) * 7
    shares: list[list[float]] = [[] for _ in range(7)]
    for i in range(3, len(values) - 3):
        mean = sum(values[i - 3 : i + 4]) / 7
        if mean > 0:
            shares[days[i].weekday()].append(values[i] / mean)
    if not all(shares):
        return (1.0,) * 7
    raw = [statistics.median(s) for s in shares]
    scale = sum(raw) / 7
    return tuple(r / scale for r in raw) if scale > 0 else (1.0,) * 7


def growth_rate(points: Sequence[tuple[int, float]]) -> float:
    """The daily growth of the days with use (least squares on their logarithms), when
    it is clearly there: positive, ``GROWTH_SIGNIFICANCE`` standard errors from none, and
    over ``WEEKDAY_HISTORY_DAYS`` days or more. A falling pace is not extrapolated (the
    recent days' weight already follows it), so the forecast errs early, not late."""
    used = [(-float(age), math.log(value)) for age, value in points if value > 0]
    if len(used) < WEEKDAY_HISTORY_DAYS:
        return 0.0
    n = len(used)
    mean_x = sum(x for x, _ in used) / n
    mean_y = sum(y for _, y in used) / n
    spread = sum((x - mean_x) ** 2 for x, _ in used)
    if spread <= 0:
        return 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in used) / spread
    residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in used) / (n - 2)
    error = math.sqrt(residual / spread)
    if slope <= 0 or slope < GROWTH_SIGNIFICANCE * error:
        return 0.0
    return min(slope, MAX_GROWTH)


def project(
    model: Model, *, today: dt.date, spent_today: int, renews_on: dt.date
) -> list[DaySpend]:
    """Expected tokens day by day from today, at least a week and up to the renewal."""
    horizon = min(MAX_PROJECTION_DAYS, max(PACE_DAYS + 1, (renews_on - today).days))
    days = []
    for ahead in range(horizon):
        day = today + dt.timedelta(days=ahead)
        expected = model.expected(day, ahead)
        if ahead == 0:
            expected = max(0.0, expected - spent_today)
        days.append(DaySpend(day, round(expected)))
    return days


def run_out_day(projection: Sequence[DaySpend], available: int) -> dt.date | None:
    """The first day by whose end the projection has spent ``available``."""
    if available <= 0:
        return projection[0].day if projection else None
    spent = 0
    for day in projection:
        spent += day.tokens
        if spent >= available:
            return day.day
    return None


def run_out_point(projection: Sequence[DaySpend], available: int) -> float | None:
    """Days from the start of today until the projection has spent ``available``, with
    the last day's part (the back-test measures its error in days with it)."""
    spent = 0
    for index, day in enumerate(projection):
        if day.tokens > 0 and spent + day.tokens >= available:
            return index + (available - spent) / day.tokens
        spent += day.tokens
    return None


def month_tokens(values: Sequence[int]) -> int:
    """Tokens a month like the last one uses: the last ``MONTH_DAYS`` days, or a shorter
    history scaled up to as many days."""
    recent = values[-MONTH_DAYS:]
    return round(sum(recent) * MONTH_DAYS / len(recent)) if recent else 0


def packages_for(tokens: int, package_tokens: int) -> int:
    """Whole packages that hold ``tokens``; none for nothing."""
    return math.ceil(tokens / package_tokens) if tokens > 0 else 0


def _history(daily: Sequence[DaySpend], today: dt.date) -> tuple[DaySpend, ...]:
    by_day: dict[dt.date, int] = {}
    first = today - dt.timedelta(days=WINDOW_DAYS)
    for d in daily:
        if first <= d.day < today:
            by_day[d.day] = by_day.get(d.day, 0) + max(0, d.tokens)
    used = [day for day, tokens in by_day.items() if tokens > 0]
    start = min(used) if used else min(by_day, default=today)
    return tuple(
        DaySpend(start + dt.timedelta(days=i), by_day.get(start + dt.timedelta(days=i), 0))
        for i in range((today - start).days)
    )


def _week(today: dt.date) -> list[int]:
    """Offsets from today of Monday, Tuesday, … Sunday of the coming week."""
    return [(weekday - today.weekday()) % 7 for weekday in range(7)]
