"""The soak, short: ``bench/soak.py`` for 15 seconds with a few visitors, checked as the
full run is (docs/benchmarks.md, "Soak"). No timing is asserted: the script's own
checks are counts (errors, job runs per lease interval, files trained, ledger verify)
and a generous memory bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import postgres_admin_url

ROOT = Path(__file__).parents[2]
CUSTOMERS = 2
RSS_BOUND_MIB = 300  # the full run states its own, tighter bound

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.model,  # the model server and the web processes load the bundled models
    pytest.mark.xdist_group("soak"),
]


def test_a_short_soak_has_no_error_but_busy_and_leaves_everything_consistent(
    tmp_path: Path, redis_url: str
) -> None:
    admin = postgres_admin_url()
    if admin is None:
        if os.environ.get("CHATMETER_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required but CHATMETER_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL unavailable: CHATMETER_TEST_POSTGRES_URL is not set")
    out = tmp_path / "soak.json"
    command = [
        sys.executable, str(ROOT / "bench" / "soak.py"),
        "--seconds", "15", "--visitors", "6", "--customers", str(CUSTOMERS),
        "--postgres", admin, "--redis", redis_url,
        "--rss-bound-mib", str(RSS_BOUND_MIB), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=600,  # a bound, not a figure: the run takes 70-110 s
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    assert figures["failures"] == []
    assert figures["errors"] == [] and figures["answered"] > 0
    assert figures["purchases"] > 0 and figures["purchase_errors"] == []
    assert figures["uploads"] > 0 and figures["upload_errors"] == []
    # The help articles each customer started with, and every upload: all trained.
    assert figures["trained"] == 2 * CUSTOMERS + figures["uploads"]
    assert figures["training_failed"] == 0
    for name, job in figures["jobs"].items():
        assert job["runs"] >= 1, name
        assert job["twice_in_an_interval"] == 0 and job["missed_intervals"] == 0, (name, job)
    assert figures["job_errors"] == []
    assert figures["ledger_verify"] == "clean"
    # /metrics, summed over both web processes, saw the turns the visitors saw.
    turns = figures["metrics_turns"]
    assert turns["complete"] + turns["partial"] == figures["answered"]
    assert figures["metrics_turns"]["busy"] == figures["busy"]
