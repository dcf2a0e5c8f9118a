"""The figures ``/metrics`` reads from the database when Prometheus scrapes.

Computed at scrape time, a few indexed counts, never on a chat turn's path: how far
behind each named job is, the outbox's backlog, the training queue.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.context import Context
from chatmeter.jobs.models import JobLease
from chatmeter.jobs.registry import JOBS
from chatmeter.notifications.models import OutboxMessage, OutboxStatus
from chatmeter.training.models import FileStatus, TrainingFile


@dataclass(frozen=True)
class JobFigures:
    name: str
    lag_seconds: float | None  # None: never run yet
    failed: bool  # its last run raised


def job_lag(
    every: dt.timedelta, last_started: dt.datetime | None, now: dt.datetime
) -> float | None:
    """Seconds a job is overdue: 0 while it ran within its interval."""
    if last_started is None:
        return None
    return max(0.0, (now - last_started - every).total_seconds())


def jobs(session: Session, now: dt.datetime) -> list[JobFigures]:
    leases = {lease.name: lease for lease in session.scalars(select(JobLease))}
    figures = []
    for job in JOBS.values():
        if not job.leased:  # runs on every tick; its backlog is its own queue (training)
            continue
        lease = leases.get(job.name)
        started = lease.last_started_at if lease else None
        failed = last_result_failed(lease.last_result if lease else None)
        figures.append(JobFigures(job.name, job_lag(job.every, started, now), failed))
    return figures


def _count_and_oldest(
    session: Session, model: type[OutboxMessage] | type[TrainingFile], status: str
) -> tuple[int, dt.datetime | None]:
    count, oldest = session.execute(
        select(func.count(), func.min(model.created_at)).where(model.status == status)
    ).one()
    return int(count), oldest


def _age(oldest: dt.datetime | None, now: dt.datetime) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return max(0.0, (now - oldest).total_seconds())


class DatabaseGauges(Collector):
    """A Prometheus collector over the database, read on each scrape."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            job_figures = jobs(session, now)
            pending, oldest_mail = _count_and_oldest(session, OutboxMessage, OutboxStatus.PENDING)
            dead, _ = _count_and_oldest(session, OutboxMessage, OutboxStatus.DEAD)
            queued, oldest_file = _count_and_oldest(session, TrainingFile, FileStatus.QUEUED)
            processing, _ = _count_and_oldest(session, TrainingFile, FileStatus.PROCESSING)
        lag = GaugeMetricFamily(
            "chatmeter_job_lag_seconds",
            "Seconds a named job is overdue (0: it ran within its interval); absent until "
            "it first runs.",
            labels=["job"],
        )
        failed = GaugeMetricFamily(
            "chatmeter_job_last_run_failed", "1 when a job's last run raised.", labels=["job"]
        )
        for figures in job_figures:
            if figures.lag_seconds is not None:
                lag.add_metric([figures.name], figures.lag_seconds)
            failed.add_metric([figures.name], 1.0 if figures.failed else 0.0)
        outbox = GaugeMetricFamily(
            "chatmeter_outbox_backlog",
            "Emails in the outbox by status: pending (to send or retry), dead (out of retries).",
            labels=["status"],
        )
        outbox.add_metric(["pending"], pending)
        outbox.add_metric(["dead"], dead)
        training = GaugeMetricFamily(
            "chatmeter_training_queue", "Training files by status.", labels=["status"]
        )
        training.add_metric(["queued"], queued)
        training.add_metric(["processing"], processing)
        yield lag
        yield failed
        yield outbox
        yield GaugeMetricFamily(
            "chatmeter_outbox_oldest_pending_seconds",
            "Age of the oldest email not sent yet (0: none).",
            value=_age(oldest_mail, now),
        )
        yield training
        yield GaugeMetricFamily(
            "chatmeter_training_oldest_queued_seconds",
            "Age of the oldest training file waiting (0: none).",
            value=_age(oldest_file, now),
        )


def last_result_failed(last_result: str | None) -> bool:
    """Whether a lease's recorded result is a failure (``jobs.worker`` records the error)."""
    if not last_result:
        return False
    try:
        return "error" in json.loads(last_result)
    except (ValueError, TypeError):
        return False
