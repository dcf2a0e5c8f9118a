"""Several web processes: each writes its figures to PROMETHEUS_MULTIPROC_DIR, and the
process that is scraped answers for all of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow  # spawns processes

ROOT = Path(__file__).parents[2]

A_TURN = """
from chatmeter.telemetry import metrics
metrics.turn_settled(outcome="complete", context=10, generation=5)
metrics.QUEUE_WAITING.labels("local:").set(2)
"""

SCRAPE = """
import sys
import chatmeter.models  # every table, for create_all
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.ops import exposition

url = sys.argv[1]
Database(url).create_all()
ctx = Context.from_settings(Settings(_env_file=None, env=Env.TEST, database_url=url))
sys.stdout.write(exposition.render(ctx).decode())
"""


def python(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_metrics_add_up_across_processes(tmp_path: Path) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = os.environ | {
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    for _ in range(2):
        python(A_TURN, env)
    body = python(SCRAPE, env, f"sqlite:///{tmp_path / 'x.db'}")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert values[("chatmeter_chat_turns_total", (("outcome", "complete"),))] == 2
    assert values[("chatmeter_tokens_charged_total", (("kind", "context"),))] == 20
    assert values[("chatmeter_tokens_charged_total", (("kind", "generation"),))] == 10
    assert ("chatmeter_outbox_backlog", (("status", "pending"),)) in values  # the database's
