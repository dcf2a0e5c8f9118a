"""Back-test of the runway forecast (``chatmeter.billing.forecast``) on simulated usage.

    .venv/bin/python bench/forecast.py [--runs 300] [--seed 12]

Each run draws an account's daily use for 28 days of history and 21 days after
"today", in one of five shapes:

- **steady**: the same level every day (1,000 to 8,000 tokens), each day's figure
  off by a log-normal factor (σ 0.25, about a quarter either way);
- **weekly**: the same, times a working week's pattern (Monday 1.25 … Sunday 0.25);
- **growth**: the level grows 2–4% a day (doubling in 2–5 weeks), throughout;
- **viral spike**: steady, with one day 8–15× the level among the last 10 of history;
- **quiet month**: steady, then use drops to 25–50% 7–14 days before today and stays there.

For a horizon of h days it sets the available balance so that the real use runs it
out h days after the start of today (at a random moment of that day), asks the
forecast from the history alone (at the start of today: nothing spent yet), and
measures the error in days between the forecast's run-out moment (the run-out day
plus the part of it used) and the real one. It prints, per shape and horizon, the
median and 90th percentile of the absolute error, the mean signed error (negative:
the forecast says earlier than it happens) and how often the forecast names the
right date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import statistics
from collections.abc import Callable

from chatmeter.billing.forecast import DaySpend, forecast, run_out_point

HISTORY = 28
FUTURE = 21
HORIZONS = (3, 7, 14)
TODAY = dt.date(2026, 12, 9)  # a Wednesday; each run shifts it so weekdays vary
WEEK = (1.25, 1.2, 1.15, 1.1, 1.0, 0.4, 0.25)  # Monday first; scaled to average 1 below
WEEK_SCALE = 7 / sum(WEEK)

Shape = Callable[[random.Random, list[dt.date]], list[float]]


def noise(rng: random.Random) -> float:
    return math.exp(rng.gauss(0, 0.25))


def steady(rng: random.Random, days: list[dt.date]) -> list[float]:
    level = rng.uniform(1000, 8000)
    return [level * noise(rng) for _ in days]


def weekly(rng: random.Random, days: list[dt.date]) -> list[float]:
    level = rng.uniform(1000, 8000)
    return [level * WEEK[d.weekday()] * WEEK_SCALE * noise(rng) for d in days]


def growth(rng: random.Random, days: list[dt.date]) -> list[float]:
    level = rng.uniform(500, 3000)
    rate = rng.uniform(0.02, 0.04)
    return [level * (1 + rate) ** i * noise(rng) for i in range(len(days))]


def viral_spike(rng: random.Random, days: list[dt.date]) -> list[float]:
    values = steady(rng, days)
    spike = rng.randrange(HISTORY - 10, HISTORY)
    values[spike] *= rng.uniform(8, 15)
    return values


def quiet_month(rng: random.Random, days: list[dt.date]) -> list[float]:
    values = steady(rng, days)
    start = HISTORY - rng.randint(7, 14)
    drop = rng.uniform(0.25, 0.5)
    return [v * (drop if i >= start else 1) for i, v in enumerate(values)]


SHAPES: dict[str, Shape] = {
    "steady": steady,
    "weekly": weekly,
    "growth": growth,
    "viral spike": viral_spike,
    "quiet month": quiet_month,
}


def one_run(shape: Shape, horizon: int, rng: random.Random) -> tuple[float, bool] | None:
    """(forecast − real run-out in days, whether the date is right); None if the
    forecast saw no run-out within its projection."""
    today = TODAY + dt.timedelta(days=rng.randrange(7))
    days = [today + dt.timedelta(days=i - HISTORY) for i in range(HISTORY + FUTURE)]
    values = [round(v) for v in shape(rng, days)]
    history = [DaySpend(d, v) for d, v in zip(days[:HISTORY], values[:HISTORY], strict=True)]
    future = values[HISTORY:]
    part = rng.random()
    available = sum(future[:horizon]) + round(part * future[horizon])
    real = horizon + part
    result = forecast(
        history,
        today=today,
        spent_today=0,
        available=available,
        renews_on=today + dt.timedelta(days=40),
        package_tokens=5000,
    )
    predicted = run_out_point(result.projection, available)
    if predicted is None:
        return None
    return predicted - real, math.floor(predicted) == math.floor(real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    print(f"{args.runs} runs per shape and horizon, seed {args.seed}\n")
    print("| Shape | Days out | Median error (days) | p90 error | Mean signed error | Right date |")
    print("|---|---:|---:|---:|---:|---:|")
    all_seven: list[float] = []
    for name, shape in SHAPES.items():
        for horizon in HORIZONS:
            rng = random.Random(f"{args.seed}:{name}:{horizon}")
            results = [one_run(shape, horizon, rng) for _ in range(args.runs)]
            errors = [r[0] for r in results if r is not None]
            right = sum(1 for r in results if r is not None and r[1])
            absolute = sorted(abs(e) for e in errors)
            if horizon == 7:
                all_seven.extend(absolute)
            missed = args.runs - len(errors)
            print(
                f"| {name} | {horizon} | {statistics.median(absolute):.2f} "
                f"| {absolute[int(0.9 * (len(absolute) - 1))]:.2f} "
                f"| {statistics.fmean(errors):+.2f} | {100 * right / args.runs:.0f}%"
                + (f" ({missed} no run-out)" if missed else "")
                + " |"
            )
    print(
        f"\nAll shapes, 7 days out: median absolute error {statistics.median(all_seven):.2f} days"
    )


if __name__ == "__main__":
    main()
