"""Several web processes on one port (``chatmeter serve --workers N``).

uvicorn's supervisor (the parent) binds the port and starts N children; each child
builds its own app from the settings (``chatmeter.web.app.from_environment``),
loads its models, then takes connections from the shared socket. What the parent
owns is here:

- **The metrics folder.** With N > 1 every child writes its figures to
  ``PROMETHEUS_MULTIPROC_DIR`` so that whichever child is scraped answers for all.
  When the operator did not set it, the parent makes a private folder for this run
  (and removes it at exit) instead of refusing: a forgotten variable must not make
  ``/metrics`` answer for one child at random.
- **Dead children.** A child that crashed leaves its live gauges (queue depth,
  requests) in the folder; ``DeadProcessSweeper`` forgets them, so that the sums
  stay those of the living. Counters stay: what a dead child counted did happen.
- **Children that cannot start.** One that dies before it ever served stops the
  server with an error instead of being started again forever; one that served and
  then died is replaced (``chatmeter.ops.supervisor``).
- **Which child answered.** ``chatmeter_web_process_requests`` counts each live
  process's requests under its ``pid`` label: how evenly the processes share the
  work, and how an operator (or a test) sees that several of them answer.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from chatmeter.ops import exposition

SWEEP_EVERY_SECONDS = 2.0

# prometheus-client's per-process files of the gauges that count only live processes.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

# Made by the first app that starts serving in this process, not on import: a CLI
# command or a worker that imports this module is no web process, and with
# PROMETHEUS_MULTIPROC_DIR set it would otherwise leave a file (a "process") behind.
_requests: Gauge | None = None
_made = threading.Lock()


class CountRequests:
    """Counts this process's HTTP requests (an in-memory add; a memory-mapped one with
    several processes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _requests is not None:
            _requests.inc()
        await self.app(scope, receive, send)


def process_started() -> None:
    """This process shows up in ``/metrics`` (at 0) once it serves, before any request."""
    global _requests
    with _made:
        if _requests is None:
            _requests = Gauge(
                "chatmeter_web_process_requests",
                "Requests answered by each live web process since it started, by pid.",
                multiprocess_mode="liveall",
            )
            _requests.set(0)


def check_metrics_dir() -> None:
    """Raise ``ValueError`` when the operator's metrics folder cannot be used: every web
    process would fail as it starts, with a traceback about a file."""
    folder = exposition.multiprocess_dir()
    if folder and not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
        raise ValueError(
            f"{exposition.MULTIPROC_ENV}={folder} is not a folder this user can write: "
            "create it (deploy/chatmeter-metrics-dir.service does) or unset it"
        )


def ensure_metrics_dir() -> Path | None:
    """The folder several processes share their metrics through; a new private one
    (returned, for ``remove_private_dir``) when the operator set none, else None."""
    if exposition.multiprocess_dir():
        return None
    folder = Path(tempfile.mkdtemp(prefix="chatmeter-metrics-"))
    os.environ[exposition.MULTIPROC_ENV] = str(folder)  # the children inherit it
    return folder


def remove_private_dir(folder: Path | None) -> None:
    if folder is not None:
        os.environ.pop(exposition.MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_dead(folder: Path) -> list[int]:
    """Forget the live gauges of every process in ``folder`` that no longer runs."""
    dead = set()
    for path in folder.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in sorted(dead):
        exposition.process_exited(pid)
    return sorted(dead)


class DeadProcessSweeper:
    """A thread of the parent that sweeps the metrics folder every few seconds (the
    supervisor restarts a dead child; this forgets the dead one's gauges)."""

    def __init__(self, folder: Path, every: float = SWEEP_EVERY_SECONDS) -> None:
        self.folder = folder
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="chatmeter-metrics-sweeper", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        sweep_dead(self.folder)  # the children have exited by now

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            sweep_dead(self.folder)
