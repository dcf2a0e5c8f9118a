"""The embedding model's engines side by side, numpy, ONNX Runtime and torch, by the size of a call.

    .venv/bin/python bench/embedding.py [--questions 200] [--repeats 5]

- **a question**: one new short question at a time, as a visitor's turn embeds
  it: ``knowledge/minilm_numpy.py`` with its encoder layers through ONNX Runtime
  (``minilm_onnx.py``, what ``MiniLMEmbedder`` now uses) and in numpy, against
  torch as ``MiniLMEmbedder._embed_one`` ran it before, on one torch thread
  (float32, and bfloat16 with its linear layers' weights cast once, the default
  on a CPU that computes in bfloat16). The engines take turns question
  by question, so that both meet the same load.
- **batches**: passage sentences as a turn's grounding embeds them (5, 20 and
  60 sentences of the help articles) and one training batch (32 passages of
  ~220 tokens): numpy and ONNX Runtime on one thread against sentence-transformers' ``encode``
  on every core, float32 and bfloat16. Median wall time and mean CPU time of
  the process per call, engines in turn.
- **memory**: the resident size of a fresh process after it embedded one
  question with the embedder alone (ONNX Runtime), and with torch's model.

``--trees NAME=SRC,NAME=SRC [--rounds 3]`` measures instead the question path of
whole source trees (``src`` of a worktree of an earlier commit: before/after),
each in a process of its own, taking turns: ``MiniLMEmbedder().embed([q])`` for
new questions, p50, p99, CPU per question and the process's resident memory.

Printed: machine and load, then one table per part; ratios are numpy's time
over torch's. CPU time counts every thread of the process, so torch's second
core shows there and not in wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).parents[1]
HELP = ROOT / "docs" / "help"
OPENINGS = ["", "Please tell me: ", "Quick question. ", "Hi! ", "I wonder: "]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def torch_one(model: Any, narrow: bool) -> Callable[[str], Any]:
    """A question as ``_embed_one`` embedded it before numpy: one torch thread, no ``encode``."""
    import torch

    def embed(text: str) -> Any:
        with (
            torch_threads(1),
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=narrow),
        ):
            return model.forward(model.preprocess([text]))["sentence_embedding"].float().numpy()

    return embed


def torch_encode(model: Any, narrow: bool) -> Callable[[list[str]], Any]:
    import torch

    def embed(texts: list[str]) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=narrow):
            return model.encode(texts, batch_size=32, convert_to_numpy=True)

    return embed


def timed(embed: Callable[[Any], Any], argument: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    embed(argument)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def help_sentences() -> list[str]:
    text = " ".join(p.read_text() for p in sorted(HELP.iterdir()))
    text = re.sub(r"[#*`>|_\[\]()-]+", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 5]


def questions(n: int) -> list[str]:
    sentences = help_sentences()
    return [f"{OPENINGS[i % len(OPENINGS)]}{sentences[i % len(sentences)]} ({i})" for i in range(n)]


def passages(count: int, words: int) -> list[str]:
    flat = " ".join(help_sentences()).split()
    step = max(1, (len(flat) - words) // count)
    return [" ".join(flat[i * step : i * step + words]) for i in range(count)]


def rss_after_a_question(engine: str) -> str:
    script = f"""
import sys
from chatmeter.knowledge import embeddings
if {engine == "torch"!r}:
    embeddings.MiniLMEmbedder()._encode(["How many tokens are in one package?"])
else:
    embeddings.MiniLMEmbedder().embed(["How many tokens are in one package?"])
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print(int(rss) // 1024, "torch" in sys.modules)
"""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    megabytes, imported = done.stdout.split()
    return f"{megabytes} MB (torch imported: {imported})"


TREE_SCRIPT = """
import statistics, sys, time
from chatmeter.knowledge import embeddings
embedder = embeddings.MiniLMEmbedder()
embedder.embed(["warm up"])
walls, cpus = [], []
for i in range(int(sys.argv[1])):
    embeddings._QUESTIONS.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    embedder.embed([f"How many tokens are in package number {i}?"])
    walls.append((time.perf_counter() - wall) * 1000)
    cpus.append((time.process_time() - cpu) * 1000)
walls.sort()
rss = [line for line in open("/proc/self/status") if line.startswith("VmRSS")][0].split()[1]
print(f"p50 {walls[len(walls) // 2]:6.2f} ms  p99 {walls[int(len(walls) * 0.99)]:6.2f} ms  "
      f"CPU {statistics.mean(cpus):5.2f} ms  {int(rss) // 1024} MB  torch {'torch' in sys.modules}")
"""


def compare_trees(trees: str, rounds: int, questions: int) -> None:
    """The question path of each source tree, each in a process of its own, taking turns."""
    for round_ in range(1, rounds + 1):
        for tree in trees.split(","):
            name, src = tree.split("=", 1)
            env = os.environ | {"PYTHONPATH": src, "HF_HUB_OFFLINE": "1"}
            done = subprocess.run(
                [sys.executable, "-c", TREE_SCRIPT, str(questions)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            print(f"round {round_}  {name:<10} {done.stdout.strip()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="calls per batch size and engine")
    parser.add_argument("--trees", help="NAME=SRC,NAME=SRC: compare source trees' question path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.trees:
        print(f"load average {os.getloadavg()[0]:.2f} at the start")
        compare_trees(args.trees, args.rounds, args.questions)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from chatmeter.knowledge import embeddings

    print(f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"cpu    {os.cpu_count()} ({platform.processor() or platform.machine()})")
    native = embeddings.native_bfloat16()
    print(f"native bfloat16: {native}; load average {os.getloadavg()[0]:.2f} at the start")

    from chatmeter.knowledge.minilm_numpy import MiniLM

    onnx_model = embeddings._NUMPY_MODEL.get()  # and numpy's BLAS on one thread
    numpy_model = MiniLM.from_directory(
        embeddings.model_path(), window=embeddings.WINDOW, engine="numpy"
    )
    wide, narrow = embeddings._MODEL.get(), embeddings._BFLOAT16_MODEL.get()
    single: dict[str, Callable[[str], Any]] = {
        "numpy": lambda text: numpy_model.embed([text]),
        f"numpy + {onnx_model.engine}": lambda text: onnx_model.embed([text]),
        "torch float32": torch_one(wide, False),
        "torch bfloat16": torch_one(narrow, True),
    }
    batch: dict[str, Callable[[list[str]], Any]] = {
        "numpy": numpy_model.embed,
        f"numpy + {onnx_model.engine}": onnx_model.embed,
        "torch float32": torch_encode(wide, False),
        "torch bfloat16": torch_encode(narrow, True),
    }

    print(f"\na question ({args.questions} new ones, engines in turn)")
    asked = questions(args.questions + 10)
    for embed in single.values():
        for text in asked[:10]:
            embed(text)  # warm up
    walls: dict[str, list[float]] = {name: [] for name in single}
    cpus: dict[str, list[float]] = {name: [] for name in single}
    for i, text in enumerate(asked[10:]):
        names = list(single)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            wall, cpu = timed(single[name], text)
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"{'engine':<16} {'p50':>8} {'p99':>8} {'CPU mean':>9}  numpy's p50 / this")
    for name in single:
        p50 = percentile(walls[name], 50)
        print(
            f"{name:<16} {p50:>5.2f} ms {percentile(walls[name], 99):>5.2f} ms "
            f"{np.mean(cpus[name]):>6.2f} ms  {percentile(walls['numpy'], 50) / p50:.2f}"
        )

    sentences = help_sentences()
    rng = np.random.default_rng(1)
    sizes: list[tuple[str, list[list[str]]]] = [
        (
            f"{n} sentences",
            [[sentences[j] for j in rng.choice(len(sentences), n)] for _ in range(args.repeats)],
        )
        for n in (5, 20, 60)
    ]
    sizes.append(("32 passages", [passages(32, 170)] * args.repeats))
    print(f"\nbatches ({args.repeats} calls per size and engine, engines in turn)")
    print(f"{'call':<14} {'tokens':>7} {'engine':<16} {'wall':>10} {'CPU':>10}  numpy / this")
    for label, calls in sizes:
        tokens = np.mean([sum(map(len, numpy_model.tokenize(c))) for c in calls])
        walls = {name: [] for name in batch}
        cpus = {name: [] for name in batch}
        for embed in batch.values():
            embed(calls[0])  # warm up
        for i, texts in enumerate(calls):
            names = list(batch)
            for name in names[i % len(names) :] + names[: i % len(names)]:
                wall, cpu = timed(batch[name], texts)
                walls[name].append(wall)
                cpus[name].append(cpu)
        for name in batch:
            wall, cpu = float(np.median(walls[name])), float(np.mean(cpus[name]))
            ratio = (
                f"{np.median(walls['numpy']) / wall:.2f} wall, "
                f"{np.mean(cpus['numpy']) / cpu:.2f} CPU"
            )
            print(f"{label:<14} {tokens:>7.0f} {name:<16} {wall:>7.1f} ms {cpu:>7.1f} ms  {ratio}")

    print("\nmemory of a fresh process after one question")
    print(f"the embedder alone {rss_after_a_question('numpy')}")
    print(f"torch's model      {rss_after_a_question('torch')}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
