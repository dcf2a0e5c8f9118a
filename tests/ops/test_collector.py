"""A serving process exempts what startup loaded from Python's garbage collector
(``chatmeter.ops.collector``), on both ways of serving, and still frees what it makes
afterwards. Each in a fresh interpreter: freezing the test process would keep its
garbage for good."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# Startup leaves far more than this alive: the app, SQLAlchemy's mappers, the models.
MANY = 50_000


def run(script: str, tmp_path: Path) -> dict[str, int]:
    """The ``name number`` lines a script printed, run with development settings on SQLite."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMETER_")}
    env |= {
        "CHATMETER_ENV": "development",
        "CHATMETER_DATA_DIR": str(tmp_path),
        "CHATMETER_WORKER": "none",
        "PYTHONPATH": str(ROOT / "src"),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        found[1]: int(found[2])
        for found in map(re.compile(r"^(\w+) (\d+)$").match, done.stdout.splitlines())
        if found
    }


def test_what_is_made_after_the_freeze_is_still_collected(tmp_path: Path) -> None:
    printed = run(
        """
        import gc, weakref
        from chatmeter.ops.collector import ready_to_serve

        before = gc.get_freeze_count()
        frozen = ready_to_serve()

        class Node:
            pass

        cycle = Node()
        cycle.itself = cycle
        alive = weakref.ref(cycle)
        del cycle
        gc.collect()
        print("before", before)
        print("frozen", frozen)
        print("count", gc.get_freeze_count())
        print("kept", int(alive() is not None))
        """,
        tmp_path,
    )
    assert printed == {
        "before": 0,
        "frozen": printed["count"],
        "count": printed["count"],
        "kept": 0,
    }
    assert printed["frozen"] > 0


@pytest.mark.model
def test_chatmeter_serve_freezes_what_it_loaded_before_it_takes_connections(
    tmp_path: Path,
) -> None:
    printed = run(
        """
        import gc
        import uvicorn

        def serve(app, **options):  # where the port would open
            print("frozen", gc.get_freeze_count(), flush=True)

        uvicorn.run = serve
        from chatmeter.cli import app

        app(["serve", "--port", "1"], standalone_mode=False)
        """,
        tmp_path,
    )
    assert printed["frozen"] > MANY


@pytest.mark.model
def test_each_process_of_serve_workers_freezes_what_it_loaded(tmp_path: Path) -> None:
    printed = run(
        """
        import gc
        from chatmeter.migrate import upgrade
        from chatmeter.config import Settings

        upgrade(Settings().database_url)
        before = gc.get_freeze_count()
        from chatmeter.web.app import from_environment

        from_environment()  # what uvicorn calls in each child
        print("before", before)
        print("frozen", gc.get_freeze_count())
        """,
        tmp_path,
    )
    assert printed["before"] == 0
    assert printed["frozen"] > MANY
