"""The bundled model's speed, and what exact counting costs a chat turn.

    .venv/bin/python bench/llm.py [--runs N] [--server]

Local model (SmolLM2-135M-Instruct Q4_1, llama.cpp, 2 threads by default): cold load
time; for prompts of about 50, 500 and 1,000 tokens, the first-token latency
(``stream()`` called to first text delta, the prompt evaluated from scratch:
each run changes the first message, so llama.cpp's prefix cache cannot help)
and generation speed in tokens per second after the first token. Then the
cost of counting a ~1,000-token prompt, which every turn pays before it
reserves: llama.cpp's tokenizer and tiktoken's o200k_base.

``--server`` also measures the ``openai`` provider against
``python -m llama_cpp.server`` serving the same model on loopback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chatmeter.llm import ChatMessage, GenerationRequest, Provider, TextDelta
from chatmeter.llm.local import LocalProvider, bundled_model_path
from chatmeter.llm.openai_compat import OpenAIProvider
from chatmeter.llm.tokenizers import TiktokenTokenizer

PASSAGE = (
    "Tokens are sold in packages of 5,000 and renew on the first day of each month. "
    "Unused tokens of the past month expire unless the operator enables rollover. "
)
MAX_TOKENS = 64


def messages(run: int, passages: int) -> list[ChatMessage]:
    system = f"Run {run}. You are the help center assistant. Answer from the passages.\n"
    return [
        ChatMessage("system", system + PASSAGE * passages),
        ChatMessage("user", "How many tokens are in one package, and when do they renew?"),
    ]


def one_turn(provider: Provider, request: GenerationRequest) -> tuple[float, float, int]:
    """First-token latency (s), tokens/s after the first token, completion tokens."""
    started = time.perf_counter()
    first = None
    with provider.stream(request) as stream:
        for event in stream:
            if first is None and isinstance(event, TextDelta):
                first = time.perf_counter()
        ended = time.perf_counter()
        tokens = stream.usage.completion_tokens
    assert first is not None
    rate = (tokens - 1) / (ended - first) if tokens > 1 and ended > first else float("nan")
    return first - started, rate, tokens


def bench_generation(provider: Provider, label: str, runs: int) -> None:
    print(f"\n{label}: first-token latency and generation speed ({runs} runs each)")
    header = ("prompt tokens", "first token p50", "max", "tokens/s p50", "tokens")
    print("{:>14} {:>16} {:>8} {:>13} {:>7}".format(*header))
    for passages in (0, 18, 40):
        prompt_tokens = provider.count_prompt_tokens(messages(0, passages))
        latencies, rates, counts = [], [], []
        for run in range(runs):
            request = GenerationRequest(messages(run + 1, passages), max_tokens=MAX_TOKENS)
            latency, rate, tokens = one_turn(provider, request)
            latencies.append(latency)
            rates.append(rate)
            counts.append(tokens)
        print(
            f"{prompt_tokens:>14} {statistics.median(latencies) * 1000:>13.0f} ms"
            f" {max(latencies) * 1000:>5.0f} ms {statistics.median(rates):>13.1f}"
            f" {statistics.median(counts):>7.0f}"
        )


def bench_counting(local: LocalProvider) -> None:
    long_prompt = messages(0, 40)
    tiktoken = TiktokenTokenizer("o200k_base")
    print("\ncounting a prompt (the cost every turn pays before it reserves)")
    for label, count in (
        ("llama.cpp (SmolLM2)", local.count_prompt_tokens),
        ("tiktoken o200k_base", tiktoken.count_prompt),
    ):
        tokens = count(long_prompt)
        times = []
        for _ in range(200):
            started = time.perf_counter()
            count(long_prompt)
            times.append(time.perf_counter() - started)
        times.sort()
        print(
            f"  {label:<22} {tokens:>5} tokens: p50 {times[100] * 1e6:.0f} µs,"
            f" p99 {times[197] * 1e6:.0f} µs"
        )


def bench_server(runs: int, threads: int) -> None:
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        provider = OpenAIProvider(
            base_url=f"http://127.0.0.1:{port}/v1",
            model="smollm2",
            tokenizer=f"gguf:{bundled_model_path()}",
            context_window=2048,
            max_retries=20,
            backoff=0.25,
        )
        with provider:
            bench_generation(provider, "openai provider -> llama_cpp.server on loopback", runs)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    args = parser.parse_args()

    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f};"
        f" llama.cpp threads: {args.threads}; answers capped at {MAX_TOKENS} tokens"
    )
    local = LocalProvider(n_threads=args.threads)
    started = time.perf_counter()
    local.load()
    print(f"model load: {(time.perf_counter() - started) * 1000:.0f} ms")
    one_turn(local, GenerationRequest(messages(0, 0), max_tokens=4))  # warm up
    bench_generation(local, "local provider (in-process llama.cpp)", args.runs)
    bench_counting(local)
    if args.server:
        bench_server(args.runs, args.threads)


if __name__ == "__main__":
    main()
