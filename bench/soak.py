"""The soak: the production shape under a steady crowd for minutes, and what it leaves.

    .venv/bin/python bench/soak.py [--seconds 600] [--visitors 50] [--customers 4]
                                   [--postgres URL] [--redis URL] [--rss-bound-mib 100]
                                   [--max-tokens 24] [--json PATH]

On loopback, bounded in counts and wall time: a private PostgreSQL database
(created, then dropped), a Redis database of its own (emptied first),
llama.cpp's OpenAI-compatible server with the bundled model, ``chatmeter serve
--workers 2`` and two workers. Each customer has an assistant on the model
server, trained on two help articles, that writes every answer with the model.
For ``--seconds``: every visitor (its own address, forwarded by the trusted
proxy) asks a question, reads the streamed answer, thinks 4-10 s and asks again,
three questions a conversation; every customer buys a package every 20 s and
uploads a new training file every 30 s through the REST API. Then the uploads
are left to finish training.

Printed, and checked (exit 1 when a check fails):

- chat turns: answered / busy (a quick 503) / error, latency p50/p99; no error;
- purchases and uploads made, and uploads trained; none failed;
- RSS of every process (web parent and children, workers and their training
  processes, model server) after the first tenth of the run, at half time and at
  the end; no Chatmeter process grew more than ``--rss-bound-mib`` (the model
  server, llama.cpp's, is shown only); no web process was restarted by the
  supervisor;
- every leased job's runs across both workers: never twice in one interval
  (the lease), never a whole interval without a run; no job raised;
- ``chatmeter ledger verify``: clean.

The workers are ``chatmeter.jobs.worker.Worker``, as ``chatmeter worker`` runs
it, with an observer that writes each leased run (its lease's start and owner)
to a file: ``python bench/soak.py --worker-child FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import load  # bench/load.py: its private PostgreSQL database

ROOT = Path(__file__).parents[1]
SERVER_KEY = "soak-key"
QUESTIONS = (
    "How many tokens are in one package?",
    "When do my tokens renew?",
    "What happens when I run out of tokens?",
    "Can I buy more tokens in the middle of the month?",
    "How much does a typical conversation cost?",
    "How do I cancel my subscription?",
)
TURNS_PER_CONVERSATION = 3
THINK_SECONDS = (4.0, 10.0)  # never more than 15 questions a minute: under the visitor limit
PURCHASE_EVERY = 20.0
UPLOAD_EVERY = 30.0
TRAINING_ARTICLES = 2
DRAIN_SECONDS = 120.0
STARTUP_SECONDS = 180.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the figures ------------------------------------------------------------------------


@dataclass
class Figures:
    answered: int = 0
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    answer_seconds: list[float] = field(default_factory=list)
    busy_seconds: list[float] = field(default_factory=list)
    purchases: int = 0
    purchase_errors: list[str] = field(default_factory=list)
    uploads: int = 0
    upload_errors: list[str] = field(default_factory=list)
    trained: int = 0
    training_failed: int = 0
    rss_mib: dict[str, list[float]] = field(default_factory=dict)
    web_pids: set[int] = field(default_factory=set)  # every web child seen: restarts show
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_errors: list[str] = field(default_factory=list)
    ledger_verify: str = ""
    metrics_turns: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


# --- setup: a database, customers and their assistants ------------------------------------


@dataclass
class Customer:
    email: str
    api_key: str
    assistant_id: int
    public_key: str


def environment(url: str, redis_url: str, data_dir: Path, max_tokens: int) -> dict[str, str]:
    """What every process of the soak runs with: the production shape on loopback."""
    from chatmeter.llm.local import bundled_model_path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATMETER_", "PROMETHEUS"))}
    return env | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "CHATMETER_ENV": "development",  # payments approved without a gateway
        "CHATMETER_DATABASE_URL": url,
        "CHATMETER_REDIS_URL": redis_url,
        "CHATMETER_DATA_DIR": str(data_dir),
        "CHATMETER_WORKER": "none",
        "CHATMETER_WORKER_INTERVAL_SECONDS": "1",
        "CHATMETER_DEMO": "false",
        "CHATMETER_PAYMENT_AUTO_APPROVE": "true",
        "CHATMETER_TRUSTED_PROXIES": "127.0.0.1/32",
        "CHATMETER_LOG_FORMAT": "json",
        "CHATMETER_LOG_LEVEL": "warning",
        "CHATMETER_MODELS": '["openai:smollm2"]',
        "CHATMETER_OPENAI_MODEL": "smollm2",
        "CHATMETER_OPENAI_API_KEY": SERVER_KEY,
        "CHATMETER_OPENAI_TOKENIZER": f"gguf:{bundled_model_path()}",
        "CHATMETER_OPENAI_CONTEXT_WINDOW": "2048",
        # The model server answers one request at a time: each web process asks it for
        # one answer at a time and lets two more turns wait (seconds each, not minutes);
        # the rest hear "busy" at once.
        "CHATMETER_CHAT_CONCURRENCY": "1",
        "CHATMETER_CHAT_QUEUE_SIZE": "2",
        "HF_HUB_OFFLINE": "1",
        "_SOAK_MAX_TOKENS": str(max_tokens),
    }


def prepare(env: dict[str, str], customers: int) -> list[Customer]:
    """Migrate; open each customer's account, subscription, API key, a large grant and
    an assistant with two help articles queued for the workers to train."""
    from chatmeter.accounts import service as accounts
    from chatmeter.assistants import service as assistants
    from chatmeter.assistants.schemas import AssistantFields
    from chatmeter.billing import periods, subscriptions
    from chatmeter.config import Settings
    from chatmeter.context import Context
    from chatmeter.ledger import service as ledger
    from chatmeter.ledger.models import GrantSource
    from chatmeter.migrate import upgrade
    from chatmeter.training import service as training

    os.environ.update(env)  # this process reads the settings as the others do
    settings = Settings()
    upgrade(settings.database_url)
    ctx = Context.from_settings(settings)
    articles = sorted((ROOT / "docs" / "help").glob("*"))[:TRAINING_ARTICLES]
    made = []
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        for n in range(customers):
            email = f"soak{n}@example.com"
            account = accounts.create_account(uow.session, email=email, now=now)
            subscriptions.open_subscription(
                uow.session, account_id=account.id, settings=settings, now=now
            )
            api_key = accounts.issue_api_key(uow.session, account_id=account.id, now=now)
            ledger.grant(
                uow.session,
                account_id=account.id,
                amount=50_000_000,
                source=GrantSource.ADJUSTMENT,
                key=f"soak-{n}",
                period=periods.period_of(now, "UTC"),
                now=now,
            )
            helper = assistants.create_assistant(
                uow.session,
                account_id=account.id,
                fields=AssistantFields(
                    name=f"Help {n}",
                    provider="openai",
                    model="smollm2",
                    max_tokens=int(env["_SOAK_MAX_TOKENS"]),
                    daily_token_cap=0,
                    answer_mode="generated",  # every answer asks the model server
                    # A short prompt: llama.cpp reads ~100 prompt tokens a second on one
                    # busy core, and the soak is about the platform, not the model.
                    passages=2,
                    context_budget=120,
                    instructions="Answer in one short sentence from the passages.",
                ),
                now=now,
                catalog=ctx.models,
            )
            for article in articles:
                training.upload(
                    uow.session,
                    assistant=helper,
                    filename=article.name,
                    data=article.read_bytes(),
                    max_bytes=settings.max_upload_bytes,
                    now=now,
                )
            uow.session.flush()
            made.append(Customer(email, api_key, helper.id, helper.public_key))
        uow.commit()
    ctx.close()
    return made


# --- the processes -------------------------------------------------------------------------


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(what: str, check: Any, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


def model_server(env: dict[str, str], folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """llama.cpp's server on a loopback port, starting (``wait_for_model`` waits for it)."""
    from chatmeter.llm.local import bundled_model_path

    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
        "--api_key", SERVER_KEY, "--interrupt_requests", "false",
    ]  # fmt: skip
    process = spawn(command, env, folder / "model-server.log")
    return process, f"http://127.0.0.1:{port}/v1"


def wait_for_model(process: subprocess.Popen[bytes], base: str, folder: Path) -> None:
    headers = {"Authorization": f"Bearer {SERVER_KEY}"}
    wait_until(
        "the model server",
        lambda: httpx.get(f"{base}/models", headers=headers, timeout=2).is_success,
        process,
        folder / "model-server.log",
    )


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def web_children(serve: subprocess.Popen[bytes]) -> list[int]:
    """uvicorn's children (its spawn helper, multiprocessing's resource tracker, left out)."""
    return [
        pid
        for pid in children_of(serve.pid)
        if "resource_tracker"
        not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]


# --- the worker child: a Worker that writes down each leased run ---------------------------


def worker_child(record: Path) -> None:
    from chatmeter.config import Settings
    from chatmeter.context import Context
    from chatmeter.jobs.models import JobLease
    from chatmeter.jobs.registry import JOBS
    from chatmeter.jobs.worker import JobEvent, Worker
    from chatmeter.telemetry.logs import configure as configure_logs

    settings = Settings()
    configure_logs(settings.log_format, settings.log_level)
    ctx = Context.from_settings(settings)
    lock = threading.Lock()
    out = record.open("a", buffering=1)

    def observe(event: JobEvent) -> None:
        line: dict[str, Any] = {"job": event.name, "phase": event.phase}
        if event.phase == "started" and JOBS[event.name].leased:
            with ctx.db.read() as session:
                lease = session.get(JobLease, event.name)
                assert lease is not None and lease.last_started_at is not None
                line |= {
                    "started": lease.last_started_at.isoformat(),
                    "owner": lease.owner,
                    "mine": lease.owner == runner.owner,
                }
        elif event.phase == "finished" and event.result and "error" in event.result:
            line["error"] = str(event.result["error"])
        else:
            return
        with lock:
            out.write(json.dumps(line) + "\n")

    runner = Worker(ctx, on_job=observe)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    runner.run_forever()
    ctx.close()


# --- the crowd and the customers ---------------------------------------------------------------


async def visitor(
    n: int, client: httpx.AsyncClient, base: str, keys: list[str], until: float, figures: Figures
) -> None:
    rng = random.Random(n)
    public_key = keys[n % len(keys)]
    headers = {"Accept": "text/event-stream", "X-Forwarded-For": f"10.77.{n // 250}.{n % 250 + 1}"}
    conversation: str | None = None
    turns = 0
    # They do not all arrive at once.
    await asyncio.sleep(min(rng.uniform(0, THINK_SECONDS[1]), until - time.monotonic()))
    while time.monotonic() < until:
        body: dict[str, Any] = {"message": rng.choice(QUESTIONS)}
        if conversation:
            body["conversation_id"] = conversation
        began = time.monotonic()
        try:
            async with client.stream(
                "POST", f"{base}/api/v1/public/{public_key}/chat", json=body, headers=headers
            ) as response:
                if response.status_code == 503 and response.headers.get("Retry-After"):
                    await response.aread()
                    figures.busy += 1
                    figures.busy_seconds.append(time.monotonic() - began)
                elif response.status_code != 200:
                    figures.errors.append(
                        f"{response.status_code} {(await response.aread())[:200]!r}"
                    )
                else:
                    done, event = False, ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line.removeprefix("event: ")
                            done = done or event == "done"
                            if event == "error":
                                figures.errors.append("an error event in a stream")
                        elif line.startswith("data: ") and event == "start":
                            conversation = json.loads(line[6:]).get("conversation_id")
                    if done:
                        figures.answered += 1
                        figures.answer_seconds.append(time.monotonic() - began)
                        turns += 1
                    else:
                        figures.errors.append("a stream ended without done")
        except httpx.HTTPError as exc:
            figures.errors.append(f"{type(exc).__name__}: {exc}")
        if turns >= TURNS_PER_CONVERSATION:
            conversation, turns = None, 0
        await asyncio.sleep(min(rng.uniform(*THINK_SECONDS), max(0.0, until - time.monotonic())))


async def customer(
    n: int, client: httpx.AsyncClient, base: str, who: Customer, until: float, figures: Figures
) -> None:
    headers = {"Authorization": f"Bearer {who.api_key}"}
    next_purchase = time.monotonic() + PURCHASE_EVERY * (n + 1) / 4
    next_upload = time.monotonic() + UPLOAD_EVERY * (n + 1) / 4
    uploaded = 0
    while time.monotonic() < until:
        now = time.monotonic()
        try:
            if now >= next_purchase:
                next_purchase += PURCHASE_EVERY
                key = f"soak-{n}-{figures.purchases}-{len(figures.purchase_errors)}"
                answer = await client.post(
                    f"{base}/api/v1/purchases",
                    json={"packages": 1},
                    headers=headers | {"Idempotency-Key": key},
                )
                if answer.status_code == 201 and answer.json().get("status") == "paid":
                    figures.purchases += 1
                else:
                    figures.purchase_errors.append(f"{answer.status_code} {answer.text[:200]}")
            if now >= next_upload:
                next_upload += UPLOAD_EVERY
                uploaded += 1
                note = (
                    f"# Opening hours, update {uploaded} of shop {n}\n\n"
                    f"Shop {n} opens at {8 + uploaded % 3}:00 and closes at {17 + uploaded % 4}:00 "
                    f"on weekdays; on Saturdays from 9:00 to {12 + uploaded % 5}:00.\n"
                )
                answer = await client.post(
                    f"{base}/api/v1/assistants/{who.assistant_id}/files",
                    files={"files": (f"hours-{uploaded}.md", note.encode(), "text/markdown")},
                    headers=headers,
                )
                if answer.status_code == 201:
                    figures.uploads += 1
                else:
                    figures.upload_errors.append(f"{answer.status_code} {answer.text[:200]}")
        except httpx.HTTPError as exc:
            figures.purchase_errors.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(0.5)


async def crowd(
    base: str, customers: list[Customer], visitors: int, seconds: float, figures: Figures,
    sample: Any,
) -> None:  # fmt: skip
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=visitors + 20, max_keepalive_connections=visitors + 20)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120)) as client:
        keys = [c.public_key for c in customers]
        tasks = [
            asyncio.create_task(visitor(n, client, base, keys, until, figures))
            for n in range(visitors)
        ] + [
            asyncio.create_task(customer(n, client, base, c, until, figures))
            for n, c in enumerate(customers)
        ]
        sampler = asyncio.create_task(sample(until, seconds))
        _, pending = await asyncio.wait(tasks, timeout=seconds + 150)
        for task in pending:
            task.cancel()
            figures.errors.append("a visitor or customer still waiting at the end")
        await asyncio.gather(*pending, sampler, return_exceptions=True)


def drain_training(base: str, customers: list[Customer], figures: Figures) -> None:
    """Wait (bounded) until every uploaded file is trained or failed; count them."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        statuses = []
        for who in customers:
            answer = httpx.get(
                f"{base}/api/v1/assistants/{who.assistant_id}/files",
                headers={"Authorization": f"Bearer {who.api_key}"},
                timeout=30,
            )
            statuses += [f["status"] for f in answer.json()]
        pending = [s for s in statuses if s not in ("ready", "failed")]
        if not pending or time.monotonic() > deadline:
            figures.trained = statuses.count("ready")
            figures.training_failed = statuses.count("failed") + len(pending)
            return
        time.sleep(1)


# --- what the workers wrote down -----------------------------------------------------------


def job_runs(records: list[Path], ended: dt.datetime, figures: Figures) -> None:
    """Each leased job: its runs across the workers in order; never two in one interval
    (a run less than ``every`` after the previous one), never a whole interval without a
    run (a gap of two intervals or more, up to the end)."""
    from chatmeter.jobs.registry import JOBS

    starts: dict[str, list[dt.datetime]] = {}
    for path in records:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "error" in row:
                figures.job_errors.append(f"{row['job']}: {row['error']}")
            elif row.get("started"):
                if not row["mine"]:
                    figures.failures.append(f"{row['job']}: run without holding its lease")
                starts.setdefault(row["job"], []).append(dt.datetime.fromisoformat(row["started"]))
    for name, job in JOBS.items():
        if not job.leased:
            continue
        runs = sorted(starts.get(name, []))
        every = job.every.total_seconds()
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(runs)]
        tail = (ended - runs[-1]).total_seconds() if runs else float("inf")
        twice = sum(g < every for g in gaps)
        missed = sum(int(g // every) - 1 for g in [*gaps, tail] if g >= 2 * every)
        figures.jobs[name] = {
            "every_s": every,
            "runs": len(runs),
            "intervals": round((ended - runs[0]).total_seconds() / every, 1) if runs else 0,
            "min_gap_s": round(min(gaps), 2) if gaps else None,
            "max_gap_s": round(max(gaps), 2) if gaps else None,
            "twice_in_an_interval": twice,
            "missed_intervals": missed,
        }
        if not runs:
            figures.failures.append(f"job {name} never ran")
        if twice:
            figures.failures.append(f"job {name} ran twice within one interval {twice} times")
        if missed:
            figures.failures.append(f"job {name} missed {missed} intervals")


# --- running ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Figures:
    figures = Figures()
    folder = Path(tempfile.mkdtemp(prefix="chatmeter-soak-"))
    url, name = load.postgres_database(args.postgres)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    env = environment(url, args.redis, folder / "data", args.max_tokens)
    processes: list[subprocess.Popen[bytes]] = []
    began = time.monotonic()
    try:
        # The model server and the web processes load their models while the database
        # is made (serve --no-migrate touches no table before its first request).
        model, model_base = model_server(env, folder)
        processes.append(model)
        env["CHATMETER_OPENAI_BASE_URL"] = model_base
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve_log = folder / "serve.log"
        command = [
            sys.executable, "-m", "chatmeter.cli", "serve", "--no-migrate", "--workers", "2",
            "--port", str(port),
        ]  # fmt: skip
        serve = spawn(command, env, serve_log)
        processes.append(serve)
        customers = prepare(env, args.customers)
        print(f"database ready at {time.monotonic() - began:.0f} s", flush=True)
        records = [folder / f"worker-{n}.jsonl" for n in range(2)]
        workers = [
            spawn(
                [sys.executable, __file__, "--worker-child", str(r)], env, folder / f"{r.stem}.log"
            )
            for r in records
        ]
        processes += workers

        def two_ready() -> bool:
            up = httpx.get(f"{base}/metrics", timeout=5).text
            return up.count("chatmeter_web_process_requests{") == 2

        wait_for_model(model, model_base, folder)
        wait_until("chatmeter serve --workers 2", two_ready, serve, serve_log)
        print(
            f"set up in {time.monotonic() - began:.0f} s; serving on {base}; logs in {folder}",
            flush=True,
        )

        def named() -> dict[str, int]:
            pids = {"web parent": serve.pid, "model server": model.pid}
            pids |= {f"web child {i}": pid for i, pid in enumerate(web_children(serve))}
            for i, w in enumerate(workers):
                pids[f"worker {i}"] = w.pid
                for pid in children_of(w.pid):  # its training process, once it has one
                    pids[f"worker {i} training process"] = pid
            return pids

        watching = threading.Event()

        def watch_web_children() -> None:
            while not watching.wait(1.0):
                figures.web_pids |= set(web_children(serve))

        figures.web_pids |= set(web_children(serve))
        watcher = threading.Thread(target=watch_web_children, daemon=True)
        watcher.start()

        async def sample(until: float, seconds: float) -> None:
            for fraction in (0.1, 0.5):
                await asyncio.sleep(max(0.0, until - seconds * (1 - fraction) - time.monotonic()))
                for label, pid in named().items():
                    figures.rss_mib.setdefault(label, []).append(rss_mib(pid) or float("nan"))

        asyncio.run(crowd(base, customers, args.visitors, args.seconds, figures, sample))
        watching.set()
        watcher.join()
        print(f"crowd gone at {time.monotonic() - began:.0f} s", flush=True)
        for label, pid in named().items():
            figures.rss_mib.setdefault(label, []).append(rss_mib(pid) or float("nan"))
        drain_training(base, customers, figures)
        values = httpx.get(f"{base}/metrics", timeout=30).text
        for line in values.splitlines():
            if line.startswith("chatmeter_chat_turns_total{"):
                outcome = line.split('"')[1]
                figures.metrics_turns[outcome] = float(line.rsplit(" ", 1)[1])
        ended = dt.datetime.now(dt.UTC)
        for worker in workers:
            stop(worker)
        job_runs(records, ended, figures)
        verified = subprocess.run(
            [sys.executable, "-m", "chatmeter.cli", "ledger", "verify"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        figures.ledger_verify = "clean" if verified.returncode == 0 else verified.stdout[-2000:]
        print(f"trained, stopped and verified at {time.monotonic() - began:.0f} s", flush=True)
    finally:
        for process in reversed(processes):
            stop(process)
        load.drop_postgres(args.postgres, name)
    judge(figures, args.rss_bound_mib)
    return figures


def judge(figures: Figures, rss_bound: float) -> None:
    if figures.errors:
        figures.failures.append(f"{len(figures.errors)} chat errors, e.g. {figures.errors[:3]}")
    if not figures.answered:
        figures.failures.append("no chat turn was answered")
    if figures.purchase_errors or figures.upload_errors:
        figures.failures.append(
            f"customers' errors: {(figures.purchase_errors + figures.upload_errors)[:3]}"
        )
    if figures.training_failed:
        figures.failures.append(f"{figures.training_failed} files not trained")
    if figures.job_errors:
        figures.failures.append(f"jobs raised: {figures.job_errors[:3]}")
    if figures.ledger_verify != "clean":
        figures.failures.append(f"ledger verify: {figures.ledger_verify}")
    if len(figures.web_pids) != 2:
        figures.failures.append(
            f"web processes restarted: {len(figures.web_pids)} pids seen for 2 processes"
        )
    for label, samples in figures.rss_mib.items():
        if label != "model server" and len(samples) == 3 and samples[2] - samples[0] > rss_bound:
            figures.failures.append(
                f"{label} grew {samples[2] - samples[0]:.0f} MiB (bound {rss_bound:.0f})"
            )


def report(figures: Figures, args: argparse.Namespace) -> None:
    answered = figures.answer_seconds
    print(
        f"\nchat turns: {figures.answered} answered, {figures.busy} busy, "
        f"{len(figures.errors)} errors; answered in p50 {percentile(answered, 50):.2f} s, "
        f"p99 {percentile(answered, 99):.2f} s; busy in p50 "
        f"{percentile(figures.busy_seconds, 50) * 1000:.0f} ms, p99 "
        f"{percentile(figures.busy_seconds, 99) * 1000:.0f} ms"
    )
    print(f"/metrics chat turns (both processes): {figures.metrics_turns}")
    print(f"web processes seen: {len(figures.web_pids)} (2 means none was restarted)")
    print(
        f"purchases: {figures.purchases} paid, {len(figures.purchase_errors)} errors; uploads: "
        f"{figures.uploads} accepted, {len(figures.upload_errors)} errors; files trained: "
        f"{figures.trained}, not trained: {figures.training_failed}"
    )
    print("\n| process | RSS MiB at 10 % | at 50 % | at end | growth |")
    print("|---|---:|---:|---:|---:|")
    for label, s in figures.rss_mib.items():
        if len(s) == 3:
            print(f"| {label} | {s[0]:.0f} | {s[1]:.0f} | {s[2]:.0f} | {s[2] - s[0]:+.0f} |")
    print("\n| job | every s | runs | intervals | min gap s | max gap s | twice | missed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, j in figures.jobs.items():
        print(
            f"| {name} | {j['every_s']:.0f} | {j['runs']} | {j['intervals']} | {j['min_gap_s']} "
            f"| {j['max_gap_s']} | {j['twice_in_an_interval']} | {j['missed_intervals']} |"
        )
    print(f"\nledger verify: {figures.ledger_verify}")
    print("checks: " + ("all passed" if not figures.failures else "FAILED"))
    for failure in figures.failures:
        print(f"  - {failure}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(figures), default=str, indent=2))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker-child":
        worker_child(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--visitors", type=int, default=50)
    parser.add_argument("--customers", type=int, default=4)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CHATMETER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--rss-bound-mib", type=float, default=100.0)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if not (0 < args.seconds <= 3600 and 0 < args.visitors <= 500 and 0 < args.customers <= 50):
        parser.error("bounded: --seconds 1..3600, --visitors 1..500, --customers 1..50")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()
    print(
        f"# bench/soak.py — {time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, load average "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; {args.visitors} visitors, "
        f"{args.customers} customers, {args.seconds:.0f} s, PostgreSQL + Redis, "
        f"serve --workers 2, 2 workers, llama.cpp server (bundled model), "
        f"response cap {args.max_tokens}",
        flush=True,
    )
    figures = run(args)
    report(figures, args)
    sys.exit(1 if figures.failures else 0)


if __name__ == "__main__":
    main()
