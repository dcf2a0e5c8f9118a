"""The training process: extraction, chunking and embedding of one file at a time, under limits.

Started by ``sandbox.Sandbox`` as ``python -m chatmeter.training.child FD MEMORY``
and spoken to over the socket ``FD`` (``multiprocessing.connection`` framing).
It limits its own memory first (``RLIMIT_DATA``: heap, anonymous mappings and
thread stacks, what the process really uses; an address-space limit would count
the gigabyte that torch reserves and never touches), then loads the embedding
model once and keeps it for every file that follows. Each file gets a fresh
CPU-time allowance, an ``ITIMER_PROF`` timer: the kernel counts the CPU time
of all the process's threads from when the file arrives and ends the process
with SIGPROF when it runs out. (``RLIMIT_CPU`` would need the time used so far
as its base, and the kernel's tick-based count runs ahead of what ``getrusage``
reports by more than a second on a busy machine.) The wall clock is the
parent's to keep.

Messages to the parent: ``("ready", info)`` once, then for each job some
``("progress", percent)`` and one of ``("done", Processed)``, ``("failed",
reason, message, ending)`` (the file's fault, explained) or ``("error", text)``
(a bug). After running out of memory (``ending``) or a bug it exits, to be
started afresh.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

EMBED_BATCH = 32


@dataclass(frozen=True)
class Job:
    path: str  # the upload, written to a temporary file by the parent
    filename: str
    max_bytes: int
    max_unpacked_bytes: int
    max_pages: int
    max_chunks: int
    passages_left: int  # the account's room under its passages quota
    passages_limit: int
    cpu_seconds: int


@dataclass(frozen=True)
class Processed:
    format: str
    pages: int
    pieces: list[Any]  # chatmeter.knowledge.chunking.Chunk
    vectors: np.ndarray  # float32 (len(pieces), dimensions)
    title: str = ""  # the document's own title, as its format states it


def main(argv: list[str]) -> int:
    connection = Connection(int(argv[1]))
    memory = int(argv[2])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core dump behind
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    from chatmeter.knowledge.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.load()
    embedder.embed(["warm up", "the threads"])  # torch starts its threads on first use
    connection.send(("ready", {"pid": os.getpid(), "memory_in_use": memory_in_use()}))
    while True:
        try:
            job: Job = connection.recv()
        except (EOFError, OSError):  # the parent is gone or closed us
            return 0
        if not serve(connection, job, embedder):
            return 0


def serve(connection: Connection, job: Job, embedder: Any) -> bool:
    """Run one job and answer; False when this process should end (it may be unwell)."""
    from chatmeter.knowledge.errors import ExtractionError, FileTooLarge

    answer: tuple[Any, ...]
    keep_going = True
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # when it rings, the process ends
    signal.setitimer(signal.ITIMER_PROF, job.cpu_seconds)
    try:
        answer = ("done", process(job, embedder, lambda p: connection.send(("progress", p))))
    except Exception as exc:
        if out_of_memory(exc):
            answer, keep_going = ("memory",), False
        elif isinstance(exc, ExtractionError):
            answer = ("failed", exc.reason, exc.message, False)
        else:
            answer, keep_going = ("error", f"{type(exc).__name__}: {exc}"[:300]), False
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    if answer[0] == "memory":  # said once the failed job's memory is free again
        limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
        failure = FileTooLarge.memory(limit=limit)
        answer = ("failed", failure.reason, failure.message, True)
    connection.send(answer)
    return keep_going


def process(job: Job, embedder: Any, progress: Callable[[int], None]) -> Processed:
    from chatmeter.knowledge.chunking import chunk
    from chatmeter.knowledge.errors import EmptyFile, QuotaReached
    from chatmeter.knowledge.extract import extract

    data = Path(job.path).read_bytes()
    document = extract(
        data,
        filename=job.filename,
        max_bytes=job.max_bytes,
        max_unpacked_bytes=job.max_unpacked_bytes,
        max_pages=job.max_pages,
    )
    del data
    progress(10)
    pieces = chunk(document, count_tokens=embedder.count_tokens, max_chunks=job.max_chunks)
    if not pieces:
        raise EmptyFile("the file contains no text to learn from")
    if len(pieces) > job.passages_left:
        raise QuotaReached.passages(
            making=len(pieces), room=job.passages_left, limit=job.passages_limit
        )
    progress(20)
    vectors: list[np.ndarray] = []
    for start in range(0, len(pieces), EMBED_BATCH):
        batch = pieces[start : start + EMBED_BATCH]
        vectors.append(embedder.embed([p.embedding_text for p in batch]))
        progress(20 + int(75 * min(len(pieces), start + EMBED_BATCH) / len(pieces)))
    matrix = np.vstack(vectors).astype("<f4")
    return Processed(document.format, len(document.pages), pieces, matrix, document.title)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is an allocation that failed.

    Python raises ``MemoryError``; torch a ``RuntimeError`` about an allocation;
    libxml2 reports it as an error in the document, which the DOCX reader wraps.
    """
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, MemoryError):
            return True
        text = str(seen)
        if "can't allocate memory" in text or "Memory allocation failed" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def memory_in_use() -> int:
    """This process's data size (what ``RLIMIT_DATA`` counts), in bytes."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    # Through the imported module, so that what is pickled names
    # chatmeter.training.child, not __main__.
    from chatmeter.training import child

    sys.exit(child.main(sys.argv))
