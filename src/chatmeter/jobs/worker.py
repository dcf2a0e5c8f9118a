"""The worker: runs each named job when it is due, once across all workers.

A job is claimed with a conditional UPDATE on its ``job_leases`` row, which
works the same on SQLite and PostgreSQL: of several workers, one wins the
lease for the job's interval and the others skip it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatmeter.context import Context
from chatmeter.jobs.models import JobLease
from chatmeter.jobs.registry import JOBS, Job

log = logging.getLogger("chatmeter.worker")


class Worker:
    def __init__(self, ctx: Context, *, names: list[str] | None = None) -> None:
        self.ctx = ctx
        self.jobs = [JOBS[name] for name in (names or list(JOBS))]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ensure_rows()

    def tick(self) -> dict[str, dict[str, object]]:
        """Run every job that is due and whose lease this worker wins."""
        results: dict[str, dict[str, object]] = {}
        for job in self.jobs:
            if not job.leased or self._claim(job):
                results[job.name] = self._run(job)
        return results

    def run_forever(self) -> None:
        log.info("worker %s started: %s", self.owner, ", ".join(j.name for j in self.jobs))
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a broken tick must not end the worker
                log.exception("worker tick failed")
            self._wake.wait(self.ctx.settings.worker_interval_seconds)
            self._wake.clear()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="chatmeter-worker", daemon=True)
        thread.start()
        return thread

    def wake(self) -> None:
        """Run the next tick now (new work arrived in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

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
            claimed = uow.session.execute(
                update(JobLease)
                .where(
                    JobLease.name == job.name,
                    or_(JobLease.leased_until.is_(None), JobLease.leased_until <= now),
                )
                .values(owner=self.owner, leased_until=now + job.every, last_started_at=now)
            ).rowcount
            uow.commit()
        return claimed == 1

    def _run(self, job: Job) -> dict[str, object]:
        try:
            result: dict[str, object] = dict(job.run(self.ctx))
        except Exception as exc:
            log.exception("job %s failed", job.name)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        if not job.leased:  # no lease row: nothing to record
            return result
        with self.ctx.db.uow() as uow:
            lease = uow.session.scalar(select(JobLease).where(JobLease.name == job.name))
            assert lease is not None
            lease.last_finished_at = self.ctx.clock.now()
            lease.last_result = json.dumps(result, default=str)[:1000]
            uow.commit()
        return result
