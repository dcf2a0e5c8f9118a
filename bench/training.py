"""Training throughput: a 100-page text PDF from upload to vectors, stage by stage.

    .venv/bin/python bench/training.py [--pages N] [--batch-size N] [--runs N]
                                       [--precision auto|float32|bfloat16]

The PDF is generated first (reportlab, not timed): A4 pages of 10-point
prose, about 450 words each, a bookmarked heading every fifth page. Then,
timed separately:

- parsing:   ``extract()`` — sniffing and PDFium text extraction (pages/s)
- chunking:  ``chunk()`` with the model's tokenizer, default settings (chunks/s)
- model load: once per process, shown apart because a worker pays it once
- embedding: ``MiniLMEmbedder.embed()`` over every chunk's embedding text (chunks/s)
- sentences: every chunk's sentences embedded for grounding, as the training process
  does (``training.child.embed_sentences``; sentences/s, and the bytes stored)

"ready" is parsing + chunking + embedding + sentences, the work a training job does for
the file once the worker is warm. Aim: under 60 s on 2 cores. With ``--runs``
each stage is timed that many times and the best run is reported.

Then the same work as the training job really does it, in the training
process (``training.sandbox``, under its limits):

- process start: spawning it and loading the model, once per process
- the PDF in the (warm) training process, against "ready" in this one
- a one-line file, in the warm process and in a fresh one: the cost per file
  of keeping the model loaded, and of not keeping it

Each stage also reports the CPU time this process used. On a shared machine
wall time includes waiting for other processes; CPU time divided by the cores
the stage can use (torch's threads, for embedding) is what it would take alone.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from chatmeter.knowledge.chunking import chunk
from chatmeter.knowledge.embeddings import MiniLMEmbedder, native_bfloat16
from chatmeter.knowledge.extract import extract
from chatmeter.knowledge.limits import ExtractionLimits
from chatmeter.knowledge.sentences import split
from chatmeter.training.child import Job, embed_sentences
from chatmeter.training.sandbox import Sandbox

AIM_SECONDS = 60.0
WORDS = (
    "token",
    "package",
    "balance",
    "assistant",
    "answer",
    "visitor",
    "widget",
    "upload",
    "file",
    "page",
    "chunk",
    "heading",
    "account",
    "invoice",
    "refund",
    "purchase",
    "support",
    "email",
    "question",
    "passage",
    "model",
    "context",
    "budget",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "it",
    "as",
    "by",
    "be",
    "are",
    "this",
    "from",
    "at",
    "or",
    "an",
    "can",
    "your",
    "customer",
    "business",
    "document",
    "training",
    "retrieval",
    "search",
    "index",
    "vector",
    "hybrid",
    "keyword",
    "monthly",
    "renewal",
    "price",
    "plan",
    "starter",
    "professional",
    "enterprise",
    "limit",
    "usage",
    "report",
)


def make_pdf(pages: int, *, seed: int = 7) -> bytes:
    """Pages of sentences, wrapped at about 95 characters, as a word processor would set them."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    pdf.setTitle("Benchmark handbook")
    _, height = A4
    for number in range(1, pages + 1):
        y = height - 50
        if number % 5 == 1:
            key = f"chapter{number}"
            pdf.bookmarkHorizontal(key, 0, y + 15)
            pdf.addOutlineEntry(f"Chapter {number // 5 + 1}", key, level=0)
            pdf.setFont("Helvetica-Bold", 14)
            pdf.drawString(50, y, f"Chapter {number // 5 + 1}")
            y -= 26
        pdf.setFont("Helvetica", 10)
        line: list[str] = []
        while y > 50:
            sentence = rng.sample(WORDS, rng.randint(6, 16))
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += "."
            for word in sentence:
                if sum(len(w) + 1 for w in line) + len(word) > 95:
                    pdf.drawString(50, y, " ".join(line))
                    y -= 13
                    line = []
                    if y <= 50:
                        break
                line.append(word)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def machine() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date        {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"cpu         {len(os.sched_getaffinity(0))} usable of {os.cpu_count()} ({model})",
        f"load avg    {load} (1, 5, 15 min) at the start",
        f"python      {platform.python_version()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    ]


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # this process's CPU time, all threads
    result: Any


def best(runs: int, work: Callable[[], Any]) -> Timing:
    """The fastest of ``runs`` runs."""
    timings = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        timings.append(Timing(time.perf_counter() - wall, time.process_time() - cpu, result))
    return min(timings, key=lambda timing: timing.wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto")
    args = parser.parse_args()

    for line in machine():
        print(line)
    data = make_pdf(args.pages)
    print(f"input       {args.pages}-page PDF, {len(data) / 1e6:.2f} MB")
    print()

    import torch

    threads = torch.get_num_threads()
    embedder = MiniLMEmbedder(batch_size=args.batch_size, precision=args.precision)
    parsing = best(args.runs, lambda: extract(data, filename="bench.pdf", max_bytes=len(data)))
    document = parsing.result
    chunking = best(args.runs, lambda: chunk(document, count_tokens=embedder.count_tokens))
    chunks = chunking.result
    load = best(1, MiniLMEmbedder.load)
    texts = [piece.embedding_text for piece in chunks]
    embedding = best(args.runs, lambda: embedder.embed(texts))
    assert embedding.result.shape == (len(chunks), embedder.dimensions)
    passages = [piece.text for piece in chunks]
    sentences = best(
        args.runs,
        lambda: embed_sentences(passages, embedder, lambda _: None, until=float("inf")),
    )
    assert len(sentences.result) == len(chunks)
    said = sum(len(split(text)) for text in passages)

    pages = len(document.pages)
    tokens = sum(piece.tokens for piece in chunks)
    precision = (
        "bfloat16"
        if embedder.precision == "bfloat16" or (embedder.precision == "auto" and native_bfloat16())
        else "float32"
    )
    alone = parsing.cpu + chunking.cpu + (embedding.cpu + sentences.cpu) / threads
    ready = parsing.wall + chunking.wall + embedding.wall + sentences.wall
    print(f"{'stage':<12}{'wall s':>8}{'cpu s':>8}  rate (by wall time)")
    print(
        f"{'parsing':<12}{parsing.wall:>8.2f}{parsing.cpu:>8.2f}  "
        f"{pages / parsing.wall:,.0f} pages/s ({pages} pages)"
    )
    print(
        f"{'chunking':<12}{chunking.wall:>8.2f}{chunking.cpu:>8.2f}  "
        f"{len(chunks) / chunking.wall:,.0f} chunks/s ({len(chunks)} chunks, {tokens:,} "
        f"tokens, {tokens / len(chunks):.0f} per chunk)"
    )
    print(f"{'model load':<12}{load.wall:>8.2f}{load.cpu:>8.2f}  once per process")
    print(
        f"{'embedding':<12}{embedding.wall:>8.2f}{embedding.cpu:>8.2f}  "
        f"{len(chunks) / embedding.wall:,.1f} chunks/s (batch {args.batch_size}, {precision}, "
        f"{threads} threads; {len(chunks) / (embedding.cpu / threads):,.1f} chunks/s alone)"
    )
    print(
        f"{'sentences':<12}{sentences.wall:>8.2f}{sentences.cpu:>8.2f}  "
        f"{said / sentences.wall:,.1f} sentences/s ({said:,} sentences, for grounding; "
        f"{sum(map(len, sentences.result)) / 1e6:.1f} MB stored)"
    )
    print(
        f"{'ready':<12}{ready:>8.2f}{'':>8}  {pages / ready:,.1f} pages/s; "
        f"{ready + load.wall:.2f} s with the model load; aim < {AIM_SECONDS:.0f} s: "
        f"{'met' if ready + load.wall < AIM_SECONDS else 'MISSED'}"
    )
    print(f"{'alone':<12}{alone:>8.2f}{'':>8}  from CPU time, as on an idle machine")
    in_child(
        data,
        ready,
        parsing.cpu + chunking.cpu + embedding.cpu + sentences.cpu,
        embedder,
        args.runs,
    )
    print(f"\nload avg at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def child_cpu(pid: int | None) -> float:
    """CPU seconds (all threads) the training process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_child(
    pdf: bytes, ready: float, ready_cpu: float, embedder: MiniLMEmbedder, runs: int
) -> None:
    """The training job's real path: the file in the training process."""
    limits = ExtractionLimits()
    memory = 2048 * 1024 * 1024

    def job(path: str) -> Job:
        return Job(
            path=path,
            filename=os.path.basename(path),
            max_bytes=limits.max_bytes,
            max_unpacked_bytes=limits.max_unpacked_bytes,
            max_pages=limits.max_pages,
            max_chunks=limits.max_chunks,
            passages_left=10**9,
            passages_limit=10**9,
            cpu_seconds=3600,
        )

    with tempfile.TemporaryDirectory() as folder:
        big = os.path.join(folder, "bench.pdf")
        with open(big, "wb") as out:
            out.write(pdf)
        notes = iter(range(1_000_000))

        def small() -> str:
            """A one-line file, different each time: a repeated text would come from a cache."""
            number = next(notes)
            path = os.path.join(folder, f"note{number}.txt")
            with open(path, "wb") as out:
                out.write(f"Branch {number} of our shop opens at nine and closes at six.".encode())
            return path

        def run(sandbox: Sandbox, path: str) -> None:
            sandbox.run(job(path), wall_seconds=3600, on_progress=lambda _: None)

        def here(path: str) -> None:
            with open(path, "rb") as source:
                document = extract(source.read(), filename=path, max_bytes=limits.max_bytes)
            pieces = chunk(document, count_tokens=embedder.count_tokens)
            embedder.embed([piece.embedding_text for piece in pieces])
            texts = [piece.text for piece in pieces]
            embed_sentences(texts, embedder, lambda _: None, until=float("inf"))

        def cold() -> None:
            fresh = Sandbox(memory_bytes=memory)
            try:
                run(fresh, small())
            finally:
                fresh.close()

        sandbox = Sandbox(memory_bytes=memory)
        try:
            start = best(1, sandbox.start)
            before = child_cpu(sandbox.pid)
            whole = best(runs, lambda: run(sandbox, big))
            whole_cpu = (child_cpu(sandbox.pid) - before) / runs
            warm = best(max(runs, 5), lambda: run(sandbox, small()))
            local = best(max(runs, 5), lambda: here(small()))
        finally:
            sandbox.close()
        fresh = best(max(runs, 2), cold)
    print(f"\nin the training process (memory {sandbox.memory_in_use / 1e6:,.0f} MB in use)")
    print(f"{'start':<12}{start.wall:>8.2f}{'':>8}  spawn and model load, once per process")
    print(
        f"{'the PDF':<12}{whole.wall:>8.2f}{whole_cpu:>8.2f}  {whole.wall - ready:+.2f} s wall, "
        f"{whole_cpu - ready_cpu:+.2f} s CPU against ready in this process"
    )
    print(f"{'one line':<12}{local.wall:>8.3f}{'':>8}  a file in this process")
    print(f"{'one line':<12}{warm.wall:>8.3f}{'':>8}  a file, the model kept loaded")
    print(f"{'one line':<12}{fresh.wall:>8.2f}{'':>8}  a file in a fresh process each time")


if __name__ == "__main__":
    main()
