"""A crowd of visitors streaming answers at once, while the rest of the product is probed.

    .venv/bin/python bench/load.py [--postgres URL] [--visitors 10,40,100,200]
                                   [--backends sqlite,postgresql] [--max-tokens 48]
                                   [--server-src PATH] [--timeout 120]

For each backend, a fresh database with one account whose assistant is trained
on the help center (docs/help), served by ``chatmeter serve`` in its own
process on loopback with the bundled model. For each N: N visitors each send
one streamed question at the same moment; meanwhile a probe asks for the
balance (``GET /api/v1/balance``, API key) and the sign-in page
(``GET /panel/sign-in``) twice a second. Printed per N:

- admitted (200) / busy (503 with Retry-After) / failed visitors, and how many
  admitted answers streamed to ``done``;
- time to the answer's status (all visitors) and time to ``done`` (admitted), p50/p99;
- the probes' latency p50/p99/max and how many failed or took longer than 10 s;
- after the crowd: whether the server still answers, and ``ledger verify``.

``--server-src`` serves another source tree (e.g. a worktree of an earlier
commit) against the same setup, for a side-by-side run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).parents[1]
QUESTION = "How many tokens are in one package, and when do they renew?"
PROBE_EVERY = 0.5
PROBE_TIMEOUT = 10.0


@dataclass
class Visit:
    status: int | None = None
    to_status: float | None = None
    to_done: float | None = None
    done: bool = False
    error: str = ""


@dataclass
class Probes:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- setup -------------------------------------------------------------------------------


def prepare(url: str, data_dir: Path, max_tokens: int) -> tuple[str, str, str]:
    """Migrate, and make an account with tokens and a trained assistant; returns
    (public key, API key, owner's email)."""
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
    settings = Settings(_env_file=None, env=Env.TEST, database_url=url, data_dir=data_dir)
    ctx = Context.from_settings(settings)
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        account = accounts.create_account(uow.session, email="load@example.com", now=now)
        subscriptions.open_subscription(
            uow.session, account_id=account.id, settings=settings, now=now
        )
        api_key = accounts.issue_api_key(uow.session, account_id=account.id, now=now)
        ledger.grant(
            uow.session,
            account_id=account.id,
            amount=50_000_000,
            source=GrantSource.ADJUSTMENT,
            key="load",
            period=periods.period_of(now, "UTC"),
            now=now,
        )
        helper = assistants.create_assistant(
            uow.session,
            account_id=account.id,
            fields=AssistantFields(name="Help Center", max_tokens=max_tokens, daily_token_cap=0),
            now=now,
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
    return public_key, api_key, "load@example.com"


def start_server(url: str, data_dir: Path, port: int, src: Path | None) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "CHATMETER_ENV": "development",
        "CHATMETER_DATABASE_URL": url,
        "CHATMETER_DATA_DIR": str(data_dir),
        "CHATMETER_WORKER": "none",
        "CHATMETER_DEMO": "false",
        # One address sends every visitor: the per-visitor limit would be all we measured.
        "CHATMETER_CHAT_VISITOR_RATE": "100000/minute",
        "CHATMETER_CHAT_ASSISTANT_RATE": "100000/minute",
        "HF_HUB_OFFLINE": "1",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return subprocess.Popen(
        [sys.executable, "-m", "chatmeter.cli", "serve", "--port", str(port), "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_until_up(base: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{base}/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not start")


# --- the crowd and the probes ---------------------------------------------------------------


async def visit(client: httpx.AsyncClient, url: str, start: float, record: Visit) -> None:
    try:
        async with client.stream(
            "POST", url, json={"message": QUESTION}, headers={"Accept": "text/event-stream"}
        ) as response:
            record.status = response.status_code
            record.to_status = time.monotonic() - start
            async for line in response.aiter_lines():
                if line == "event: done":
                    record.done = True
                    record.to_done = time.monotonic() - start
    except httpx.HTTPError as exc:
        record.error = type(exc).__name__


async def probe(client: httpx.AsyncClient, base: str, api_key: str, probes: Probes) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    while True:
        for path, extra in (("/api/v1/balance", headers), ("/panel/sign-in", {})):
            began = time.monotonic()
            try:
                response = await client.get(base + path, headers=extra, timeout=PROBE_TIMEOUT)
                if response.status_code != 200:
                    probes.failures += 1
                else:
                    probes.latencies.append(time.monotonic() - began)
            except httpx.HTTPError:
                probes.failures += 1
        await asyncio.sleep(PROBE_EVERY)


async def crowd(
    base: str, public_key: str, api_key: str, visitors: int, timeout: float
) -> tuple[list[Visit], Probes, bool]:
    url = f"{base}/api/v1/public/{public_key}/chat"
    limits = httpx.Limits(max_connections=visitors + 10, max_keepalive_connections=0)
    records = [Visit() for _ in range(visitors)]
    probes = Probes()
    async with (
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout)) as client,
        httpx.AsyncClient(timeout=PROBE_TIMEOUT) as prober,
    ):
        probing = asyncio.create_task(probe(prober, base, api_key, probes))
        start = time.monotonic()
        tasks = [asyncio.create_task(visit(client, url, start, r)) for r in records]
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
        try:
            after = await prober.get(f"{base}/panel/sign-in", timeout=PROBE_TIMEOUT)
            recovered = after.status_code == 200
        except httpx.HTTPError:
            recovered = False
    return records, probes, recovered


def report(visitors: int, records: list[Visit], probes: Probes, recovered: bool) -> str:
    admitted = [r for r in records if r.status == 200]
    busy = [r for r in records if r.status == 503]
    failed = [r for r in records if r.status not in (200, 503)]
    statuses = [r.to_status for r in records if r.to_status is not None]
    done = [r.to_done for r in admitted if r.to_done is not None]
    ms = [x * 1000 for x in probes.latencies]
    return (
        f"| {visitors:>4} | {len(admitted):>4} | {len(busy):>4} | {len(failed):>4} "
        f"| {len(done):>4} | {percentile(statuses, 50):6.2f} / {percentile(statuses, 99):6.2f} "
        f"| {percentile(done, 50):6.1f} / {percentile(done, 99):6.1f} "
        f"| {percentile(ms, 50):6.1f} / {percentile(ms, 99):7.1f} / {max(ms, default=0):7.1f} "
        f"| {probes.failures:>3} | {'yes' if recovered else 'NO':>3} |"
    )


def verify_clean(url: str) -> bool:
    from chatmeter.db import Database
    from chatmeter.ledger.verify import verify

    database = Database(url)
    with database.read() as session:
        ok = all(r.ok for r in verify(session))
    database.dispose()
    return ok


# --- running -------------------------------------------------------------------------------


def run_backend(name: str, url: str, args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="chatmeter-load-"))
    public_key, api_key, _ = prepare(url, data_dir, args.max_tokens)
    print(f"\n### {name}\n")
    print(
        "| N | ok | busy | fail | done | to status s p50/p99 | to done s p50/p99 "
        "| probe ms p50/p99/max | probe fail | up after |"
    )
    print("|---:|---:|---:|---:|---:|---|---|---|---:|---|")
    for visitors in args.visitors:
        port = free_port()
        server = start_server(url, data_dir, port, args.server_src)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(wait_until_up(base))
            records, probes, recovered = asyncio.run(
                crowd(base, public_key, api_key, visitors, args.timeout)
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        print(report(visitors, records, probes, recovered), flush=True)
    print(f"\nledger verify after the runs: {'clean' if verify_clean(url) else 'PROBLEMS'}")


def postgres_database(admin: str) -> tuple[str, str]:
    name = f"chatmeter_load_{os.getpid()}"
    engine = create_engine(admin.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin).set(database=name).render_as_string(hide_password=False), name


def drop_postgres(admin: str, name: str) -> None:
    engine = create_engine(admin.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("CHATMETER_BENCH_POSTGRES_URL"))
    parser.add_argument(
        "--visitors", type=lambda s: [int(n) for n in s.split(",")], default=[10, 40, 100, 200]
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--server-src", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()
    print(
        f"# bench/load.py — {time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, load average "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; server source: "
        f"{args.server_src or 'this tree'}; response cap {args.max_tokens} tokens"
    )
    backends = args.backends.split(",")
    if "sqlite" in backends:
        folder = Path(tempfile.mkdtemp(prefix="chatmeter-load-db-"))
        run_backend("SQLite", f"sqlite:///{folder / 'load.db'}", args)
    if "postgresql" in backends:
        if not args.postgres:
            print("\n(PostgreSQL skipped: pass --postgres URL)")
            return
        url, name = postgres_database(args.postgres)
        try:
            run_backend("PostgreSQL", url, args)
        finally:
            drop_postgres(args.postgres, name)


if __name__ == "__main__":
    main()
