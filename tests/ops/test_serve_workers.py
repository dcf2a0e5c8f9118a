"""``chatmeter serve --workers N``: several processes answer on one port, ``/metrics``
adds them up, a dead child's gauges leave, a reload (SIGHUP) replaces every process with
no request refused, and the in-process worker runs once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from chatmeter.cli import app
from tests.support.net import free_port

ROOT = Path(__file__).parents[2]
BURST = 8
MAX_BURSTS = 40  # each burst reaches both processes with near certainty; 40 never all miss
STARTUP_SECONDS = 180


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "should be greater than or equal to 1"),
        ("65", "should be less than or equal to 64"),
        ("two", "should be a valid integer"),
    ],
)
def test_a_bad_number_of_processes_is_refused_with_a_readable_message(
    value: str, says: str
) -> None:
    result = CliRunner().invoke(app, ["serve", "--no-migrate", "--workers", value])
    output = " ".join((result.output + result.stderr).replace("│", " ").split())
    assert result.exit_code == 2, output
    assert f"Invalid value for '--workers': Input {says}" in output


def test_a_metrics_folder_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMETER_")}
    missing = tmp_path / "no-such-folder"
    result = CliRunner().invoke(
        app,
        ["serve", "--no-migrate", "--workers", "2"],
        env=env
        | {
            "CHATMETER_ENV": "development",
            "CHATMETER_DATA_DIR": str(tmp_path),
            "PROMETHEUS_MULTIPROC_DIR": str(missing),
        },
    )
    output = result.output + result.stderr
    assert result.exit_code == 1, output
    assert f"PROMETHEUS_MULTIPROC_DIR={missing} is not a folder this user can write" in output


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    log: Path
    sent: int = 0  # HTTP requests this test made (each one is counted by the process answering)

    def get(self, path: str) -> httpx.Response:
        response = httpx.get(self.base + path, timeout=30)  # refused before the start: uncounted
        self.sent += 1
        return response

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }


def per_process(values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[int, float]:
    return {
        int(dict(labels)["pid"]): value
        for (name, labels), value in values.items()
        if name == "chatmeter_web_process_requests"
    }


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def wait_for(what: str, check: object, seconds: float = STARTUP_SECONDS) -> None:
    """Poll ``check`` (a callable) until it returns true; bounded."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen in {seconds} s")


def environment(tmp_path: Path, *, python_path: tuple[Path, ...] = ()) -> dict[str, str]:
    """What ``chatmeter serve`` runs with here; ``python_path`` goes before the project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATMETER_", "PROMETHEUS"))}
    return env | {
        "PYTHONPATH": os.pathsep.join(map(str, [*python_path, ROOT / "src", ROOT])),
        "CHATMETER_ENV": "development",
        "CHATMETER_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "CHATMETER_DATA_DIR": str(tmp_path / "data"),
        "CHATMETER_DEMO": "false",
        "CHATMETER_WORKER": "inprocess",
        # A server model counted by tiktoken: no bundled LLM to load in each child.
        "CHATMETER_MODELS": '["openai:gpt-4o-mini"]',
        "HF_HUB_OFFLINE": "1",
    }


def serve(env: dict[str, str], port: int, log: Path, workers: int = 2) -> subprocess.Popen[bytes]:
    """``chatmeter serve --workers N``, its output (both streams) in ``log``."""
    command = ["serve", "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "chatmeter.cli", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "serve.log"
    process = serve(environment(tmp_path), port, log)
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        yield served
    finally:
        stop(process)


pytestmark = pytest.mark.slow  # spawns processes


def test_two_processes_answer_on_one_port_and_metrics_add_them_up(served: Served) -> None:
    def two_live() -> bool:
        return len(per_process(served.scrape())) == 2

    wait_for("two web processes starting", two_live)
    children = set(per_process(served.scrape()))
    assert all(parent_of(pid) == served.process.pid for pid in children)

    # Refused chat turns (an unknown assistant), sent in bursts of fresh connections,
    # until each process has answered some: the kernel hands connections to either.
    chat = served.base + "/api/v1/public/pk_unknown/chat"
    turns = 0
    answered: set[int] = set()
    with ThreadPoolExecutor(BURST) as pool:
        for _ in range(MAX_BURSTS):
            before = per_process(served.scrape())
            answers = list(
                pool.map(lambda _: httpx.post(chat, json={"message": "hi"}), range(BURST))
            )
            served.sent += BURST
            turns += BURST
            assert all(a.status_code in (429, 503) for a in answers), [a.text for a in answers]
            after = per_process(served.scrape())
            answered |= {pid for pid in children if after[pid] - before[pid] > 1}  # > the scrape
            if answered == children:
                break
    values = served.scrape()
    counts = per_process(values)
    assert set(counts) == children
    assert sum(counts.values()) == served.sent  # every request, counted by the one answering
    refused = sum(v for (name, _), v in values.items() if name == "chatmeter_chat_turns_total")
    assert refused == turns  # one sum over both processes' files
    assert answered == children  # each process answered chat turns


def test_a_dead_process_is_replaced_and_its_gauges_leave(served: Served) -> None:
    wait_for("two web processes starting", lambda: len(per_process(served.scrape())) == 2)
    victim = min(per_process(served.scrape()))
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        pids = set(per_process(served.scrape()))
        return victim not in pids and len(pids) == 2

    wait_for("the dead process replaced and forgotten", replaced)

    served.process.send_signal(signal.SIGTERM)
    status = served.process.wait(timeout=60)
    text = served.log.read_text()
    # A process that had served and died is no failure to start: a clean stop.
    assert status == 0, text[-3000:]
    assert f"web process {victim} was killed by SIGKILL; starting another" in text
    # The in-process worker ran once, in the parent, not in each child.
    starts = re.findall(r"worker \S+:(\d+):\w+ started", text)
    assert starts == [str(served.process.pid)], text[-3000:]
    private = re.search(r"PROMETHEUS_MULTIPROC_DIR not set: the processes share (\S+)", text)
    assert private is not None and not Path(private.group(1)).exists()  # removed at exit


def test_a_reload_replaces_every_process_without_refusing_a_request(served: Served) -> None:
    wait_for("two web processes starting", lambda: len(per_process(served.scrape())) == 2)
    before = set(per_process(served.scrape()))
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def keep_asking() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                status = httpx.get(served.base + "/healthz", timeout=30).status_code
                answered += 1
                if status != 200:
                    failures.append(str(status))
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        served.process.send_signal(signal.SIGHUP)  # `systemctl reload`

        def replaced() -> bool:
            pids = set(per_process(served.scrape()))
            return len(pids) == 2 and not pids & before

        wait_for("both processes replaced", replaced)
    finally:
        stop.set()
        asking.join()
    assert answered > 0 and failures == []


def cut_short_model(tmp_path: Path) -> dict[str, str]:
    """The environment of a server whose bundled model's file is cut short (a copy that
    ran out of disk), found before the installed package."""
    from chatmeter.llm.local import BUNDLED_FILE, BUNDLED_PACKAGE, bundled_model_path

    package = tmp_path / "site" / BUNDLED_PACKAGE  # found before the installed one
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with bundled_model_path().open("rb") as model:
        (package / BUNDLED_FILE).write_bytes(model.read(64 * 1024))
    env = environment(tmp_path, python_path=(tmp_path / "site",))
    return env | {"CHATMETER_WORKER": "none", "CHATMETER_MODELS": '["local"]'}


def exit_status(process: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return process.wait(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")
    finally:
        stop(process)


@pytest.mark.model  # the children load the embedder, then fail on the bundled model
def test_a_process_that_cannot_load_its_model_stops_the_server_with_an_error(
    tmp_path: Path,
) -> None:
    """The bundled model's file cut short (a copy that ran out of disk): only the
    children load it, the parent (CHATMETER_WORKER=none) never does. Restarting them
    would fail the same way forever, behind a supervisor that looks healthy."""
    log = tmp_path / "serve.log"
    status = exit_status(serve(cut_short_model(tmp_path), free_port(), log), log)
    text = log.read_text()
    assert status == 3, text[-3000:]  # uvicorn's STARTUP_FAILURE: systemd leaves it failed
    # Each child says why, once: none was started again.
    causes = re.findall(r"web process (\d+) could not start: Failed to load model", text)
    assert 1 <= len(causes) <= 2 and len(set(causes)) == len(causes), text[-3000:]
    # The parent names the child that stopped it, and the command says so on exit.
    stopped = re.search(r"web process (\d+) exited with status 3 before it served", text)
    assert stopped is not None and stopped.group(1) in causes, text[-3000:]
    assert "error: web process" in text, text[-3000:]


@pytest.mark.model
def test_one_process_that_cannot_load_its_model_exits_with_a_readable_error(
    tmp_path: Path,
) -> None:
    """The same failure with a single web process: the same status, one readable line."""
    log = tmp_path / "serve.log"
    status = exit_status(serve(cut_short_model(tmp_path), free_port(), log, workers=1), log)
    text = log.read_text()
    assert status == 3, text[-3000:]
    assert "the web process could not start: Failed to load model" in text, text[-3000:]
    assert "error: the models did not load: Failed to load model" in text, text[-3000:]


def killed_while_loading() -> None:
    """An app factory whose process is killed as it loads, as the kernel's OOM killer
    kills one loading a model too big for the machine."""
    os.kill(os.getpid(), signal.SIGKILL)


async def _answer(scope: dict[str, object], receive: object, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def killed_once() -> object:
    """An app factory whose first process is killed as it loads (by the kernel, say, once)
    and whose next ones start: the marker file says which is first."""
    try:
        os.close(os.open(os.environ["MARKER"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return _answer
    os.kill(os.getpid(), signal.SIGKILL)
    return _answer  # not reached


SUPERVISE = """
import sys
from uvicorn.config import Config
from chatmeter.ops.supervisor import Supervisor

config = Config(sys.argv[1], factory=True, port=int(sys.argv[2]), workers=2, log_config=None)
supervisor = Supervisor(config, sockets=[config.bind_socket()])
supervisor.run()
print(supervisor.failure)
"""


def test_a_process_killed_before_it_served_stops_the_supervisor(tmp_path: Path) -> None:
    factory = f"{__name__}:{killed_while_loading.__name__}"
    result = subprocess.run(
        [sys.executable, "-c", SUPERVISE, factory, str(free_port())],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,  # uvicorn's own supervisor starts it again forever
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"web process \d+ was killed by SIGKILL before it served\n", result.stdout)


def test_a_process_killed_once_before_it_served_is_replaced(tmp_path: Path) -> None:
    """One child killed before the supervisor saw it serving is no failure to start (a
    child killed a moment after it started, or once by the kernel): it is replaced."""
    port = free_port()
    errors = tmp_path / "stderr.log"
    env = environment(tmp_path) | {"MARKER": str(tmp_path / "first")}
    with errors.open("w") as stderr:
        supervising = subprocess.Popen(
            [sys.executable, "-c", SUPERVISE, f"{__name__}:{killed_once.__name__}", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        wait_for("a replacement", lambda: "; starting another" in errors.read_text())
        wait_for(
            "both serving",
            lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=30).text == "ok",
        )
        supervising.send_signal(signal.SIGTERM)
        out, _ = supervising.communicate(timeout=60)
    finally:
        stop(supervising)
    assert out == "None\n", errors.read_text()[-3000:]
    assert re.search(r"web process \d+ was killed by SIGKILL; starting another", errors.read_text())
