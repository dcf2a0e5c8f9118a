"""A chat turn's overhead against a bare proxy: LiteLLM's routing and Chatmeter's turn, one run.

    .venv/bin/python bench/overhead.py [--postgres URL] [--requests 300]
                                       [--rows litellm,sqlite,postgresql]
                                       [--cache-dir /tmp/chatmeter-bench] [--server-src PATH]

An OpenAI-compatible upstream on loopback (in this script, its own process)
answers every completion at once and notes how long each took it. Then, one row
after the other, N sequential requests from one client go through:

- **litellm**: LiteLLM's proxy, routing only (no database, no budgets, no
  callbacks), installed by the script into a virtualenv of its own under
  ``--cache-dir`` (``pip install 'litellm[proxy]'`` from PyPI; when that fails
  the row is skipped and the reason printed);
- **sqlite** / **postgresql**: ``chatmeter serve`` on a fresh database, its
  public chat API (``POST /api/v1/public/{key}/chat``, JSON) for an assistant trained
  on the seven help articles (docs/help) answering with a model of the
  upstream (``answer_mode`` "generated": retrieval, the prompt, reserve, the
  model, settle, the messages stored).

Every request is a new question (the help center's 50 benchmark questions,
each with six different openings), so no cache of question vectors is hit.
Overhead = the client's time for the request minus the upstream's own time for
it (request read to answer written). Printed: the machine and its load, p50 and
p99 of the overhead per row, and each Chatmeter row's ratio to LiteLLM's.

``--server-src`` serves another source tree (a worktree of an earlier commit)
with the same setup, for a before/after run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import load  # bench/load.py: free ports, databases

ROOT = Path(__file__).parents[1]
MODEL = "gpt-4o-mini"
ANSWER = "One package holds 5,000 tokens, and ten packages give 50,000 tokens a month."
OPENINGS = ["", "Please tell me: ", "Quick question. ", "Hi! ", "I wonder: ", "Can you help? "]
LITELLM_KEY = "sk-chatmeter-bench-0123456789abcdef0123456789abcdef"
WARM_UP = 10  # requests before the measured ones (connections, caches, the JIT of nothing)
SPAWN = multiprocessing.get_context("spawn")


# --- the upstream ---------------------------------------------------------------------------


class Upstream(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions`` answered at once (JSON, or SSE when asked to stream);
    ``GET /timings`` returns and forgets the milliseconds each completion took here, by
    its last message (the question)."""

    protocol_version = "HTTP/1.1"
    # An answer in one segment, sent at once: with Nagle's algorithm a body written after
    # its headers waits for the client's delayed ACK (40 ms on Linux), counted as overhead.
    disable_nagle_algorithm = True
    timings: ClassVar[dict[str, float]] = {}

    def do_POST(self) -> None:
        started = time.perf_counter()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        messages = body.get("messages") or [{}]
        prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4
        words = ANSWER.split(" ")
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words)}
        usage["total_tokens"] = prompt + len(words)
        base = {"id": "chatcmpl-bench", "created": int(time.time()), "model": body.get("model")}
        if body.get("stream"):
            events = [
                base
                | {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}],
                }
                for w in words
            ]
            events.append(
                base
                | {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(
                    base | {"object": "chat.completion.chunk", "choices": [], "usage": usage}
                )
            payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(payload.encode(), "text/event-stream")
        else:
            answer = base | {
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": ANSWER},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            self._send(json.dumps(answer).encode(), "application/json")
        question = str(messages[-1].get("content", ""))
        Upstream.timings[question] = (time.perf_counter() - started) * 1000

    def do_GET(self) -> None:
        taken = dict(Upstream.timings)
        Upstream.timings.clear()
        self._send(json.dumps(taken).encode())

    def _send(self, payload: bytes, kind: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self._headers_buffer.append(b"\r\n")  # end_headers() without its flush
        self.wfile.write(b"".join(self._headers_buffer) + payload)
        self._headers_buffer = []

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_upstream(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Upstream).serve_forever()


def upstream_timings(base: str) -> dict[str, float]:
    return dict(httpx.get(f"{base}/timings").json())


# --- the rows ---------------------------------------------------------------------------------


def questions() -> Iterator[str]:
    """New questions without end: the help center's, each with ever new openings."""
    asked = json.loads((ROOT / "bench/answers/help/questions.json").read_text())
    plain = [q["question"] for q in asked]
    yield from (opening + q for opening in OPENINGS for q in plain)
    for n in itertools.count(2):
        yield from (f"{q} ({n})" for q in plain)


@dataclass
class Row:
    overheads: list[float]  # ms, of the requests the upstream answered
    failed: int  # not 200
    without_model: int  # 200, but answered without asking the upstream (Chatmeter abstained)
    cpu_ms: float = math.nan  # the server's CPU time (all its threads) per measured request
    full_collections: int | None = None  # Python's generation-2 collections in the server meanwhile


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) and its children so far."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for kid in (task / "children").read_text().split():
                found += [int(kid), *children(int(kid))]
    return found


def measure(
    client: httpx.Client,
    url: str,
    body: Callable[[str], dict[str, Any]],
    upstream: str,
    count: int,
    server: int,
) -> Row:
    """Send new questions until ``count`` of them (after the warm-up) reached the upstream."""
    row = Row([], 0, 0)
    asked = questions()
    for _ in range(WARM_UP):
        client.post(url, json=body(next(asked)))
    upstream_timings(upstream)
    cpu_before, requests = cpu_seconds(server), 0
    for question in asked:
        if len(row.overheads) >= count or row.failed + row.without_model > 2 * count:
            break
        started = time.perf_counter()
        response = client.post(url, json=body(question))
        elapsed = (time.perf_counter() - started) * 1000
        requests += 1
        own = upstream_timings(upstream)
        if response.status_code != 200:
            row.failed += 1
            if row.failed <= 3:
                print(f"    {response.status_code}: {response.text[:200]}", flush=True)
        elif question in own:
            row.overheads.append(elapsed - own[question])
        else:
            row.without_model += 1
    # Per request, abstained ones included (they cost no less than a turn with the model).
    row.cpu_ms = (cpu_seconds(server) - cpu_before) * 1000 / max(1, requests)
    return row


def litellm_row(args: argparse.Namespace, upstream: str) -> Row | str:
    venv = Path(args.cache_dir) / "litellm"
    litellm = venv / "bin" / "litellm"
    if not litellm.exists():
        print(f"installing litellm[proxy] into {venv} …", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin/pip"), "install", "-q", "litellm[proxy]"],
                check=True,
                timeout=1800,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            return f"skipped: litellm could not be installed ({exc})"
    version = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    config = Path(tempfile.mkdtemp()) / "litellm.yaml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": f"{upstream}/v1",
                            "api_key": "bench",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False, "drop_params": True},
                # A key, as any deployment has (it refuses to start without one); no database.
                "general_settings": {"master_key": LITELLM_KEY},
            }
        )
    )
    port = load.free_port()
    env = os.environ | {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [str(litellm), "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(f"http://127.0.0.1:{port}/health/liveliness", server)
        prompt = (ROOT / "docs/help/buying-tokens.txt").read_text()[:2000]

        def body(question: str) -> dict[str, Any]:
            return {
                "model": MODEL,
                "messages": [
                    {"role": "system", "content": "Answer from these passages:\n" + prompt},
                    {"role": "user", "content": question},
                ],
                "max_tokens": 160,
            }

        headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
        with httpx.Client(timeout=30, headers=headers) as client:
            result = measure(
                client,
                f"http://127.0.0.1:{port}/v1/chat/completions",
                body,
                upstream,
                args.requests,
                server.pid,
            )
        print(f"litellm {version}", flush=True)
        return result
    finally:
        server.terminate()
        server.wait(30)


def prepare(url: str, data_dir: Path, upstream: str) -> str:
    """Migrate, and make an account with tokens and an assistant trained on docs/help that
    answers with the upstream's model; returns its public key."""
    from chatmeter.accounts import service as accounts
    from chatmeter.assistants import service as assistants
    from chatmeter.assistants.schemas import AssistantFields
    from chatmeter.billing import periods, subscriptions
    from chatmeter.config import Env, Settings
    from chatmeter.context import Context
    from chatmeter.ledger import service as ledger
    from chatmeter.ledger.models import GrantSource
    from chatmeter.migrate import upgrade
    from chatmeter.training import service as training

    upgrade(url)
    settings = Settings(
        _env_file=None,
        env=Env.TEST,
        database_url=url,
        data_dir=data_dir,
        models=[f"openai:{MODEL}"],
        openai_base_url=f"{upstream}/v1",
    )
    ctx = Context.from_settings(settings)
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        account = accounts.create_account(uow.session, email="bench@example.com", now=now)
        subscriptions.open_subscription(
            uow.session, account_id=account.id, settings=settings, now=now
        )
        ledger.grant(
            uow.session,
            account_id=account.id,
            amount=50_000_000,
            source=GrantSource.ADJUSTMENT,
            key="overhead",
            period=periods.period_of(now, "UTC"),
            now=now,
        )
        helper = assistants.create_assistant(
            uow.session,
            account_id=account.id,
            fields=AssistantFields(
                name="Help Center",
                provider="openai",
                model=MODEL,
                answer_mode="generated",
                daily_token_cap=0,
            ),
            now=now,
            catalog=ctx.models,
        )
        for article in sorted((ROOT / "docs" / "help").glob("*")):
            training.upload(
                uow.session,
                assistant=helper,
                filename=article.name,
                data=article.read_bytes(),
                max_bytes=settings.max_upload_bytes,
                now=now,
            )
        public_key = helper.public_key
        uow.commit()
    while training.process_queue(ctx)["ready"]:
        pass
    ctx.close()
    return public_key


def full_collections(client: httpx.Client, port: int) -> int | None:
    """How many full (generation 2) collections Python's garbage collector has made in the
    server so far, from its ``/metrics`` (None when it does not say)."""
    found = re.search(
        r'^python_gc_collections_total\{generation="2"\} (\S+)$',
        client.get(f"http://127.0.0.1:{port}/metrics").text,
        re.MULTILINE,
    )
    return int(float(found[1])) if found else None


def chatmeter_row(url: str, args: argparse.Namespace, upstream: str) -> Row | str:
    data_dir = Path(tempfile.mkdtemp(prefix="chatmeter-overhead-"))
    public_key = prepare(url, data_dir, upstream)
    port = load.free_port()
    env = os.environ | {
        "CHATMETER_ENV": "development",
        "CHATMETER_DATABASE_URL": url,
        "CHATMETER_DATA_DIR": str(data_dir),
        "CHATMETER_WORKER": "none",
        "CHATMETER_DEMO": "false",
        "CHATMETER_MODELS": json.dumps([f"openai:{MODEL}"]),
        "CHATMETER_OPENAI_BASE_URL": f"{upstream}/v1",
        "CHATMETER_OPENAI_API_KEY": "bench",
        # One client sends every request: the per-visitor limit would be all we measured.
        "CHATMETER_CHAT_VISITOR_RATE": "1000000/minute",
        "CHATMETER_CHAT_ASSISTANT_RATE": "1000000/minute",
        "HF_HUB_OFFLINE": "1",
    }
    if args.server_src:
        env["PYTHONPATH"] = str(args.server_src)
    server = subprocess.Popen(
        [sys.executable, "-m", "chatmeter.cli", "serve", "--port", str(port), "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(f"http://127.0.0.1:{port}/healthz", server)
        with httpx.Client(timeout=30) as client:
            before = full_collections(client, port)
            row = measure(
                client,
                f"http://127.0.0.1:{port}/api/v1/public/{public_key}/chat",
                lambda question: {"message": question},
                upstream,
                args.requests,
                server.pid,
            )
            after = full_collections(client, port)
            if before is not None and after is not None:
                row.full_collections = after - before
            return row
    finally:
        server.terminate()
        server.wait(30)


def wait_until(url: str, server: subprocess.Popen[bytes], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling a port that is not open yet: nothing to wait on instead
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


# --- reporting --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def machine() -> list[str]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return [
        f"date        {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        f"cpu         {len(os.sched_getaffinity(0))} usable of {os.cpu_count()} ({model})",
        f"python      {platform.python_version()}, sqlite {sqlite3.sqlite_version}",
    ]


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("CHATMETER_BENCH_POSTGRES_URL"),
        help="admin URL of a PostgreSQL server (default $CHATMETER_BENCH_POSTGRES_URL); "
        "without it the postgresql row is skipped",
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rows", default="litellm,sqlite,postgresql")
    parser.add_argument(
        "--cache-dir", default=os.path.join(tempfile.gettempdir(), "chatmeter-bench")
    )
    parser.add_argument("--server-src", type=Path, help="serve Chatmeter from this source tree")
    args = parser.parse_args()

    for line in machine():
        print(line)
    print(f"requests    {args.requests} sequential per row, after {WARM_UP} to warm up", flush=True)
    port = load.free_port()
    upstream_process = SPAWN.Process(target=serve_upstream, args=(port,), daemon=True)
    upstream_process.start()
    upstream = f"http://127.0.0.1:{port}"
    results: dict[str, Row | str] = {}
    try:
        for row in args.rows.split(","):
            print(f"\n{row}: load average {load_average()} at the start", flush=True)
            if row == "litellm":
                results[row] = litellm_row(args, upstream)
            elif row == "sqlite":
                with tempfile.TemporaryDirectory(prefix="chatmeter-overhead-") as tmp:
                    results[row] = chatmeter_row(f"sqlite:///{tmp}/bench.db", args, upstream)
            elif row == "postgresql":
                if not args.postgres:
                    results[row] = "skipped: no --postgres URL"
                    continue
                url, name = load.postgres_database(args.postgres)
                try:
                    results[row] = chatmeter_row(url, args, upstream)
                finally:
                    load.drop_postgres(args.postgres, name)
            else:
                parser.error(f"unknown row {row!r}")
            print(f"{row}: load average {load_average()} at the end", flush=True)
    finally:
        upstream_process.kill()

    print(
        f"\n{'path':<12} {'overhead p50':>13} {'p99':>9} {'mean':>9} {'measured':>9} "
        f"{'failed':>7} {'no model':>9} {'p50 ratio':>10} {'p99 ratio':>10} {'server CPU':>11}"
        f" {'full GCs':>9}"
    )
    base = results.get("litellm")
    base_p50, base_p99 = (
        (percentile(base.overheads, 50), percentile(base.overheads, 99))
        if isinstance(base, Row) and base.overheads
        else (None, None)
    )
    for row, result in results.items():
        if isinstance(result, str) or not result.overheads:
            print(f"{row:<12} {result}")
            continue
        overheads = result.overheads
        p50, p99 = percentile(overheads, 50), percentile(overheads, 99)
        mean = sum(overheads) / len(overheads)
        r50 = f"{p50 / base_p50:.2f}" if base_p50 else "-"
        r99 = f"{p99 / base_p99:.2f}" if base_p99 else "-"
        gcs = "-" if result.full_collections is None else str(result.full_collections)
        print(
            f"{row:<12} {p50:>10.1f} ms {p99:>6.1f} ms {mean:>6.1f} ms {len(overheads):>9} "
            f"{result.failed:>7} {result.without_model:>9} {r50:>10} {r99:>10} "
            f"{result.cpu_ms:>8.1f} ms {gcs:>9}"
        )
    print(
        "(ratios: this row's over LiteLLM's; overhead = client time - upstream's own time;\n"
        " no model: answered without the upstream, Chatmeter abstaining, not measured;\n"
        " server CPU: the server process's CPU time per request, all requests after the warm-up;\n"
        " full GCs: Python's full (generation 2) garbage collections in the server meanwhile)"
    )
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
