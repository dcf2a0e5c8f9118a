"""The worker: runs each named job when it is due, once across all workers.

A job is claimed with a conditional UPDATE on its ``job_leases`` row, which
works the same on SQLite and PostgreSQL: of several workers, one wins the
lease for the job's interval and the others skip it.

Jobs run in lanes, a thread each (``Job.lane``): training a large file takes
minutes, and renewals, hold expiry and emails must not wait behind it, so the
training job has a lane of its own. Within a lane, jobs run one after another.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatmeter.context import Context
from chatmeter.db import rowcount
from chatmeter.jobs.models import JobLease
from chatmeter.jobs.registry import JOBS, MAIN_LANE, TRAINING_LANE, Job

log = logging.getLogger("chatmeter.worker")


@dataclass(frozen=True)
class JobEvent:
    """A job this worker started or finished, for whoever watches it (metrics, tests)."""

    name: str
    phase: Literal["started", "finished"]
    result: dict[str, object] | None = None


class Worker:
    def __init__(
        self,
        ctx: Context,
        *,
        names: list[str] | None = None,
        on_job: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.on_job = on_job
        self.jobs = [JOBS[name] for name in (names or list(JOBS))]
        self.lanes: dict[str, list[Job]] = {}
        for job in self.jobs:
            self.lanes.setdefault(job.lane, []).append(job)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = {lane: threading.Event() for lane in self.lanes}
        self._ensure_rows()

    def tick(self) -> dict[str, dict[str, object]]:
        """Run every job that is due and whose lease this worker wins, lane after lane."""
        results: dict[str, dict[str, object]] = {}
        for lane in self.lanes:
            results |= self.tick_lane(lane)
        return results

    def tick_lane(self, lane: str) -> dict[str, dict[str, object]]:
        results: dict[str, dict[str, object]] = {}
        for job in self.lanes[lane]:
            if not job.leased or self._claim(job):
                results[job.name] = self._run(job)
        return results

    def run_forever(self) -> None:
        """Run every lane until ``stop`` (the CLI's ``chatmeter worker``)."""
        threads = self.start()
        self._stop.wait()
        for thread in threads:
            thread.join()

    def start(self) -> list[threading.Thread]:
        """A thread per lane, each ticking its jobs every interval or when woken."""
        log.info("worker %s started: %s", self.owner, ", ".join(j.name for j in self.jobs))
        threads = []
        for lane in self.lanes:
            name = "chatmeter-worker" if lane == MAIN_LANE else f"chatmeter-worker-{lane}"
            thread = threading.Thread(target=self._run_lane, args=(lane,), name=name, daemon=True)
            thread.start()
            threads.append(thread)
        return threads

    def wake(self) -> None:
        """Tick every lane now (new work arrived in this process)."""
        for event in self._wake.values():
            event.set()

    def stop(self) -> None:
        """Stop every lane; a file in training goes back to the queue for the next worker."""
        self._stop.set()
        self.wake()
        if TRAINING_LANE in self.lanes:
            from chatmeter.training import sandbox

            sandbox.close_all()

    def _run_lane(self, lane: str) -> None:
        wake = self._wake[lane]
        while not self._stop.is_set():
            try:
                self.tick_lane(lane)
            except Exception:  # a broken tick must not end the worker
                log.exception("worker tick failed (%s lane)", lane)
            wake.wait(self.ctx.settings.worker_interval_seconds)
            wake.clear()

    def _ensure_rows(self) -> None:
        insert = pg_insert if self.ctx.db.is_postgres else sqlite_insert
        with self.ctx.db.uow() as uow:
            for job in self.jobs:
                if not job.leased:
                    continue
                uow.session.execute(insert(JobLease).values(name=job.name).on_conflict_do_nothing())
            uow.commit()

    def _claim(self, job: Job) -> bool:
        now = self.ctx.clock.now()
        with self.ctx.db.uow() as uow:
            claimed = rowcount(
                uow.session.execute(
                    update(JobLease)
                    .where(
                        JobLease.name == job.name,
                        or_(JobLease.leased_until.is_(None), JobLease.leased_until <= now),
                    )
                    .values(owner=self.owner, leased_until=now + job.every, last_started_at=now)
                )
            )
            uow.commit()
        return claimed == 1

    def _run(self, job: Job) -> dict[str, object]:
        self._tell(JobEvent(job.name, "started"))
        try:
            result: dict[str, object] = dict(job.run(self.ctx))
        except Exception as exc:
            log.exception("job %s failed", job.name)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        self._finish(job, result)
        self._tell(JobEvent(job.name, "finished", result))
        return result

    def _tell(self, event: JobEvent) -> None:
        if self.on_job is not None:
            self.on_job(event)

    def _finish(self, job: Job, result: dict[str, object]) -> None:
        if not job.leased:  # no lease row: nothing to record
            return
        with self.ctx.db.uow() as uow:
            lease = uow.session.scalar(select(JobLease).where(JobLease.name == job.name))
            assert lease is not None
            lease.last_finished_at = self.ctx.clock.now()
            lease.last_result = json.dumps(result, default=str)[:1000]
            uow.commit()
