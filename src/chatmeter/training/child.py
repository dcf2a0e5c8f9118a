"""The training process: extraction, chunking and embedding of one file at a time, under limits.

Started by ``sandbox.Sandbox`` as ``python -m chatmeter.training.child FD MEMORY GROWTH``
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
``("progress", percent)`` and one of ``("done", Processed)`` (``("done", Processed,
True)`` when it ends after it, its memory having grown too much), ``("failed",
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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

EMBED_BATCH = 32
# Sentences are embedded only within this share of a file's CPU allowance (see
# ``embed_sentences``).
SENTENCES_CPU_SHARE = 0.5


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
    # Each piece's sentences' vectors, as grounding reads them (``knowledge.sentences.pack``).
    sentence_vectors: list[bytes] = field(default_factory=list)


def main(argv: list[str]) -> int:
    connection = Connection(int(argv[1]))
    memory, growth = int(argv[2]), int(argv[3])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core dump behind
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    from chatmeter.knowledge.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.load()
    embedder.embed(["warm up", "the threads"])  # torch starts its threads on first use
    ready = memory_in_use()
    connection.send(("ready", {"pid": os.getpid(), "memory_in_use": ready}))
    while True:
        try:
            job: Job = connection.recv()
        except (EOFError, OSError):  # the parent is gone or closed us
            return 0
        if not serve(connection, job, embedder, most=ready + growth):
            return 0


def serve(connection: Connection, job: Job, embedder: Any, *, most: int) -> bool:
    """Run one job and answer; False when this process should end: it may be unwell, or
    its memory in use has grown past ``most`` bytes. The libraries keep what their
    calls of each new shape allocated, and a process that served many files would
    otherwise, one day, fail a file it has room for; a fresh one starts with the next."""
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
    elif answer[0] == "done" and memory_in_use() > most:
        answer, keep_going = (*answer, True), False  # done, and ending: grown too much
    connection.send(answer)
    return keep_going


def process(job: Job, embedder: Any, progress: Callable[[int], None]) -> Processed:
    from chatmeter.knowledge.chunking import chunk
    from chatmeter.knowledge.errors import EmptyFile, QuotaReached
    from chatmeter.knowledge.extract import extract

    started = time.process_time()
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
        progress(20 + int(40 * min(len(pieces), start + EMBED_BATCH) / len(pieces)))
    matrix = np.vstack(vectors).astype("<f4")
    sentences = embed_sentences(
        [p.text for p in pieces],
        embedder,
        lambda done: progress(60 + int(35 * done / len(pieces))),
        until=started + job.cpu_seconds * SENTENCES_CPU_SHARE,
    )
    return Processed(
        document.format, len(document.pages), pieces, matrix, document.title, sentences
    )


def embed_sentences(
    texts: list[str],
    embedder: Any,
    progress: Callable[[int], None],
    *,
    until: float,
    clock: Callable[[], float] = time.process_time,
) -> list[bytes]:
    """Each passage's sentences' vectors, packed as ``Chunk.sentence_vectors`` keeps them:
    the chat turn's grounding reads them instead of embedding the sentences itself.

    Embedded ``EMBED_BATCH`` passages at a time, while this process's CPU time
    (``clock``) is below ``until``; the passages after that get none (the
    turn embeds their sentences when it first needs them, as it did before), so that a
    file which trained within its CPU allowance without them still does. Each call to
    the model holds at most ``NUMPY_TOKENS`` tokens, so that it runs in numpy as a
    turn's would (through torch, sentences of every length made batches of ever new
    shapes, and the process's memory grew by hundreds of megabytes over a few files:
    ``docs/benchmarks.md``, "Training"); numpy's calls run one on each core.
    """
    from chatmeter.knowledge.embeddings import NUMPY_TOKENS
    from chatmeter.knowledge.sentences import pack, split

    packed: list[bytes] = []
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        for start in range(0, len(texts), EMBED_BATCH):
            if clock() >= until:
                break
            split_texts = [split(text) for text in texts[start : start + EMBED_BATCH]]
            flat = [sentence for own in split_texts for sentence in own]
            calls = _calls(flat, embedder.count_tokens, NUMPY_TOKENS)
            found = list(pool.map(embedder.embed, calls))
            rows = np.vstack(found) if found else np.zeros((0, 0), np.float32)
            at = 0
            for own in split_texts:
                packed.append(pack(own, rows[at : at + len(own)]) if own else b"")
                at += len(own)
            progress(min(len(texts), start + EMBED_BATCH))
    return packed


def _calls(texts: list[str], count: Callable[[str], int], most: int) -> list[list[str]]:
    """``texts`` in order, in runs of at most ``most`` tokens (a longer text alone)."""
    calls: list[list[str]] = []
    tokens = most
    for text in texts:
        size = count(text)
        if tokens + size > most:
            calls.append([])
            tokens = 0
        calls[-1].append(text)
        tokens += size
    return calls


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
