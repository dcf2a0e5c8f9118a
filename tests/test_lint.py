"""The code passes the checks configured in pyproject.toml: ruff, the import contracts
(import-linter: the layers of docs/architecture.md) and mypy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def run(*command: str, timeout: int) -> subprocess.CompletedProcess[str]:
    # The checked sources are this checkout's, whatever the installed package points at.
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_ruff_finds_nothing() -> None:
    done = run(sys.executable, "-m", "ruff", "check", "src", "tests", "bench", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_code_is_formatted_as_ruff_formats_it() -> None:
    done = run(
        sys.executable, "-m", "ruff", "format", "--check", "src", "tests", "bench", timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_layers_are_kept() -> None:
    """No module imports a layer above its own (``lint-imports``)."""
    done = run(str(BIN / "lint-imports"), "--no-cache", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # a minute with a warm cache, several without one
def test_mypy_finds_nothing() -> None:
    done = run(sys.executable, "-m", "mypy", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
