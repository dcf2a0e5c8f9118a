"""The bundled model in tests: the question asked of it, and llama.cpp's own
OpenAI-compatible server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from chatmeter.llm.base import ChatMessage
from tests.support.net import free_port

SERVER_API_KEY = "test-key"
# One llama.cpp thread per model: the suite shares two cores with the server
# subprocess and whatever else runs, and two spinning OpenMP threads slow
# down tenfold when they compete for the cores (see chatmeter.llm.local).
THREADS = 1
# Short answers keep the suite fast; temperature 0 makes them reproducible.
QUESTION = (
    ChatMessage("system", "You are a helpful assistant. Answer briefly."),
    ChatMessage("user", "How many tokens are in one package? Answer in one sentence."),
)


@contextmanager
def llama_cpp_server(gguf_path: Path, log: Path) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving ``gguf_path``; yields its /v1 URL."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", str(THREADS),
        "--api_key", SERVER_API_KEY,
        # A new request would otherwise cut the running stream short.
        "--interrupt_requests", "false",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        _wait_until_ready(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {SERVER_API_KEY}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", headers=headers, timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"llama_cpp.server did not start in 60 s:\n{log.read_text()[-3000:]}")
