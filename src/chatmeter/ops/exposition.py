"""What ``/metrics`` answers: this process's (or every process's) metrics and the
database's gauges, in Prometheus's text format.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several web processes, ``chatmeter serve
--workers N`` or a process manager), every process writes its counters to files in
that folder and whichever process is scraped adds them all up; the folder must be
emptied before the processes start (the systemd unit in ``docs`` does). Without it,
the scraped process answers for itself alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from chatmeter.context import Context
from chatmeter.ops.gauges import DatabaseGauges

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


class _ThisProcess(Collector):
    """The default registry's metrics (counters, histograms, gauges of this process)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render(ctx: Context) -> bytes:
    """The scrape's body."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseGauges(ctx))
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """Forget a finished process's live gauges (the queue depth it last reported)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
