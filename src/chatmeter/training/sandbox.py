"""The training process, seen from the worker: start it, hand it files, keep its clock.

Extraction and embedding never run in the web or worker process: a hostile or
merely enormous file could take its memory or its CPU for as long as it liked.
They run in a child process (``training.child``) that limits its own memory
and, for each file, its CPU time; this side keeps the wall clock and kills the
child when a file overstays it. A file that breaks a limit fails with an
explanation; the child is started again for the next file.

The child is long-lived: loading the embedding model costs seconds (see
docs/benchmarks.md), so one child serves file after file. One child per
process and memory limit (``shared``), one file at a time.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import chatmeter
from chatmeter.config import Settings
from chatmeter.knowledge.errors import ExtractionError, TooSlow
from chatmeter.training.child import Job, Processed

log = logging.getLogger("chatmeter.training")

MIB = 1024 * 1024
STARTUP_SECONDS = 300.0  # loading the model takes seconds; on a crowded machine, more


class SandboxClosed(Exception):
    """The sandbox was closed (the worker is stopping) while a file was in it."""


class Crashed(ExtractionError):
    def __init__(self, *, memory_bytes: int) -> None:
        super().__init__(
            "crashed",
            "Reading this file stopped the training process. The file may be damaged, or "
            f"need more than the {memory_bytes / 1_000_000:,.1f} MB of memory allowed. Open "
            "it, save it again (or split it into smaller files), and upload the new copy.",
        )


class Sandbox:
    """A child process that trains one file at a time within ``memory_bytes``.

    The child ends itself after a file once its memory in use has grown by more than
    ``growth_bytes`` (a quarter of the limit by default) since its model was loaded,
    and a fresh one trains the next file (``child.serve``).
    """

    def __init__(self, *, memory_bytes: int, growth_bytes: int | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.growth_bytes = memory_bytes // 4 if growth_bytes is None else growth_bytes
        self.pid: int | None = None
        self.memory_in_use: int | None = None  # the child's, once its model is loaded
        self.closed = False
        self._running = threading.Lock()  # one file at a time
        self._state = threading.Lock()  # guards the swap of _process and _connection
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None

    def start(self) -> None:
        """Start the child and load its model now, rather than with the first file."""
        with self._running:
            self._started()

    def run(
        self, job: Job, *, wall_seconds: float, on_progress: Callable[[int], None]
    ) -> Processed:
        """The file's passages and vectors; an ``ExtractionError`` saying why not.

        ``wall_seconds`` counts from when the child has the file, not while it starts.
        """
        with self._running:
            connection = self._started()
            connection.send(job)
            deadline = time.monotonic() + wall_seconds
            finished = False
            try:
                while True:
                    message = self._receive(connection, deadline, job, wall_seconds)
                    if message[0] == "progress":
                        on_progress(message[1])
                        continue
                    finished = True
                    return self._answer(message)
            finally:
                if not finished:  # a failure on this side: the child may still be at it
                    self._stop()

    def close(self) -> None:
        """Stop the child; a file in it ends with ``SandboxClosed``."""
        self.closed = True
        with self._state:
            process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        if self._running.acquire(blocking=False):  # no file in it: tidy up here
            try:
                self._stop()
            finally:
                self._running.release()

    # --- inside the lock -------------------------------------------------------------

    def _started(self) -> Connection:
        if self.closed:
            raise SandboxClosed()
        if self._process is not None and self._process.poll() is None:
            assert self._connection is not None
            return self._connection
        self._stop()
        ours, theirs = socket.socketpair()
        try:
            command = [sys.executable, "-m", "chatmeter.training.child"]
            process = subprocess.Popen(
                [*command, str(theirs.fileno()), str(self.memory_bytes), str(self.growth_bytes)],
                pass_fds=(theirs.fileno(),),
                env=_child_environment(),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        connection = Connection(ours.detach())
        with self._state:
            self._process, self._connection = process, connection
        started = time.monotonic()
        if not wait([connection], timeout=STARTUP_SECONDS) or self.closed:
            self._stop()
            raise (
                SandboxClosed()
                if self.closed
                else RuntimeError(
                    f"the training process did not start within {STARTUP_SECONDS:.0f} s"
                )
            )
        try:
            _, info = connection.recv()
        except (EOFError, OSError):
            status = self._stop()
            raise RuntimeError(
                f"the training process could not start (exit status {status}); "
                f"CHATMETER_TRAINING_MEMORY_MB ({self.memory_bytes // MIB}) may be too "
                "little for the embedding model"
            ) from None
        self.pid, self.memory_in_use = info["pid"], info["memory_in_use"]
        log.info(
            "training process %s ready in %.1f s (%.0f MB in use, limit %.0f MB)",
            self.pid,
            time.monotonic() - started,
            self.memory_in_use / MIB,
            self.memory_bytes / MIB,
        )
        return connection

    def _receive(
        self, connection: Connection, deadline: float, job: Job, wall_seconds: float
    ) -> tuple[Any, ...]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not wait([connection], timeout=remaining):
            self._stop()
            raise TooSlow.wall(seconds=wall_seconds)
        try:
            message: tuple[Any, ...] = connection.recv()
        except (EOFError, OSError):
            status = self._stop()
            if self.closed:
                raise SandboxClosed() from None
            if status == -signal.SIGPROF:
                raise TooSlow.cpu(seconds=job.cpu_seconds) from None
            log.warning("training process %s ended with status %s", self.pid, status)
            raise Crashed(memory_bytes=self.memory_bytes) from None
        return message

    def _answer(self, message: tuple[Any, ...]) -> Processed:
        kind = message[0]
        if kind == "done":
            result: Processed = message[1]
            if message[2:] == (True,):  # it ends itself: its memory grew too much
                self._stop()
            return result
        if kind == "failed":
            _, reason, text, ending = message
            if ending:  # it ends itself after running out of memory
                self._stop()
            raise ExtractionError(reason, text)
        self._stop()  # "error": a bug; it ends itself
        raise RuntimeError(f"the training process failed: {message[1]}")

    def _stop(self) -> int | None:
        """End the child (if it is still there) and forget it; its exit status."""
        with self._state:
            process, connection = self._process, self._connection
            self._process = self._connection = None
        if connection is not None:
            connection.close()
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        return process.wait()


# What the training process inherits: what Python, torch and the locale need,
# nothing else. It reads hostile files, so it gets no secret, no database URL.
_INHERITED = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "VIRTUAL_ENV")
_INHERITED_PREFIXES = ("LC_", "PYTHON", "OMP_", "MKL_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")


def _child_environment() -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES)
    }
    here = str(Path(chatmeter.__file__).resolve().parents[1])  # wherever chatmeter came from
    paths = [here, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded, ever
    environment.setdefault("TOKENIZERS_PARALLELISM", "false")
    return environment


_SHARED: dict[int, Sandbox] = {}
_SHARED_LOCK = threading.Lock()


def shared(settings: Settings) -> Sandbox:
    """This process's sandbox for the settings' memory limit."""
    memory = settings.training_memory_mb * MIB
    with _SHARED_LOCK:
        sandbox = _SHARED.get(memory)
        if sandbox is None or sandbox.closed:
            sandbox = _SHARED[memory] = Sandbox(memory_bytes=memory)
        return sandbox


def close_all() -> None:
    """Stop every training process of this process (at exit, or a worker stopping)."""
    with _SHARED_LOCK:
        sandboxes = list(_SHARED.values())
        _SHARED.clear()
    for sandbox in sandboxes:
        sandbox.close()


atexit.register(close_all)
