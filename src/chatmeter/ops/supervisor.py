"""The parent of ``chatmeter serve --workers N``: uvicorn's supervisor, stopping when a
web process cannot start.

uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``, 0.54) replaces a child
that died, whatever the cause, unless it exited with uvicorn's ``STARTUP_FAILURE`` (3):
then it stops the others and returns as if asked to stop, and ``uvicorn.run`` returns
normally. So a child whose app could not be built (a model that would not load: exit
1) was started again forever, one failed load after another, and a child whose app
failed its startup (exit 3) made the server exit 0: systemd saw a running or a cleanly
stopped service, and nobody saw an error.

``Supervisor`` tells the kinds of death apart. A child that says it cannot start (exit
3: its app could not be built, ``web.app.from_environment``, or its startup failed)
would fail the same way on every restart: the server stops, the reason is logged with
the child's pid, and ``failure`` keeps it for ``chatmeter serve`` to exit with
``STARTUP_FAILURE``. So does a second child in a row, in the same place, that dies
some other way (another status, a signal, no answer to the supervisor for
``timeout_worker_healthcheck`` seconds) before it served: the kernel killing every
new child as it loads a model too big for the machine. A child that served and then
died is replaced, as is a first one that died before it served: one crash, or one
child killed a moment after it started (before the supervisor's next ping could see
it serving), must not take the port down.

A child has served once it said so: the supervisor pings each child every half second
(uvicorn's protocol), and the child answers whether its server has started.
"""

from __future__ import annotations

import logging
import pickle
import signal
from multiprocessing.connection import wait
from socket import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("chatmeter.serve")

# What a ping finds (``Supervisor._ping``).
SERVING, STARTING, DEAD, SILENT = "serving", "starting", "dead", "silent"
# Signals that stop the supervisor: a child that died with them pending was stopped too.
_STOPPING = {signal.SIGINT, signal.SIGTERM}


class Supervisor(Multiprocess):
    """``Multiprocess`` whose ``run`` ends with ``failure`` set when a child could not start."""

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.failure: str | None = None
        self._served: set[Process] = set()
        # Per place in ``processes``: whether its last child died before it served.
        self._died_early: set[int] = set()

    def keep_subprocess_alive(self) -> None:
        """Called every half second: replaces a child that died after it served, stops
        the server when one died before."""
        if self.should_exit.is_set():
            return
        self._served.intersection_update(self.processes)  # a reload retires processes
        for index, process in enumerate(self.processes):
            state = self._ping(process)
            if state == SERVING:
                self._served.add(process)
                self._died_early.discard(index)
            if state in (SERVING, STARTING):
                continue
            process.kill()  # a silent one hangs; a dead one is only reaped
            process.join()
            if self.should_exit.is_set() or _STOPPING.intersection(self.signal_queue):
                return  # stopped with the rest: the loop stops them all next
            how = self._death(process, silent=state == SILENT)
            early = process not in self._served and process.exitcode != 0
            if process.exitcode == STARTUP_FAILURE or (early and index in self._died_early):
                self.failure = f"web process {process.pid} {how} before it served"
                log.error("%s: stopping the server", self.failure)
                self.should_exit.set()
                return
            if early:
                self._died_early.add(index)
            else:
                self._died_early.discard(index)
            log.warning("web process %s %s; starting another", process.pid, how)
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[index] = replacement

    def _ping(self, process: Process) -> str:
        """``SERVING``, ``STARTING``, ``DEAD``, or ``SILENT`` (no answer in time).

        uvicorn's own ping waits for the answer alone, and the supervisor holds both
        ends of the pipe: a child that died with a ping unanswered was noticed only
        when the whole timeout (a minute) had passed. Here its death ends the wait.
        """
        if not process.process.is_alive():
            return DEAD
        try:
            process.parent_conn.send(b"ping")
            ready = wait(
                [process.parent_conn, process.process.sentinel],
                self.config.timeout_worker_healthcheck,
            )
            if process.parent_conn in ready:
                return SERVING if process.parent_conn.recv() else STARTING
        except (OSError, EOFError, pickle.UnpicklingError):
            return DEAD
        return DEAD if ready else SILENT

    def _death(self, process: Process, *, silent: bool) -> str:
        """How a child ended, in words for the log."""
        if silent:
            return f"did not answer for {self.config.timeout_worker_healthcheck} s"
        code = process.exitcode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"
