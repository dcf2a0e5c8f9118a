"""Training in a process of its own, under limits (issue #8, item 5).

A file that needs more memory, CPU time or wall-clock time than the operator
allows fails with an explanation, leaves nothing behind, and the next file is
trained as if nothing happened; the embedding model stays loaded from one file
to the next. These are real files and a real training process: the limits are
the kernel's (RLIMIT_DATA, RLIMIT_CPU) and the worker's clock.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from chatmeter.context import Context
from chatmeter.training import sandbox
from chatmeter.training import service as training
from tests.assistants.callers import chunk_rows, index_version
from tests.support.context import derived
from tests.training.test_job import file_parts, file_row, long_text, note, queue

pytestmark = pytest.mark.model  # loads the bundled model or trains with the embedder

MIB = 1024 * 1024
SLOW = 600  # passages: tens of seconds of CPU to embed, on any machine we know of


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: what is tested here is the training process, not the database
    (tests/training/test_job.py and test_upload_api.py train on both)."""
    from chatmeter.db import Database

    url = f"sqlite:///{tmp_path / 'chatmeter.db'}"
    database = Database(url)
    database.create_all()
    database.dispose()
    return url


def assert_failed_explained(ctx: Context, file_id: int, code: str, words: str) -> None:
    file = file_row(ctx, file_id)
    assert (file.status, file.error_code) == ("failed", code), file.error_message
    assert file.error_message and words in file.error_message
    assert "Split it into smaller files" in file.error_message or code == "crashed"
    assert (file.chunks, file.leased_until) == (0, None)
    assert file_parts(ctx, file_id) == 0
    assert chunk_rows(ctx, file_id=file_id) == []


def train_now(ctx: Context, file_id: int) -> bool:
    assert training.claim_file(ctx, file_id=file_id)
    return training.process_file(ctx, file_id=file_id)


def test_files_are_trained_in_another_process_that_keeps_its_model_loaded(
    ctx: Context, assistant_id: int
) -> None:
    pids: list[int | None] = []
    for number in (1, 2):
        file_id = queue(ctx, assistant_id, f"note{number}.txt", note(number))
        assert training.claim_file(ctx, file_id=file_id)
        assert training.process_file(
            ctx,
            file_id=file_id,
            on_progress=lambda _: pids.append(sandbox.shared(ctx.settings).pid),
        )
    assert len(set(pids)) == 1 and pids[0] not in (None, os.getpid())


def test_the_training_process_inherits_no_secret(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It reads hostile files: whatever takes it over finds no key and no database URL."""
    monkeypatch.setenv("CHATMETER_SECRET_KEY", "s3cret-value-of-the-web-process")
    monkeypatch.setenv("CHATMETER_DATABASE_URL", "postgresql://app:pw@db/chatmeter")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-one")
    sandbox.close_all()  # a process started now sees the environment above
    started = sandbox.shared(ctx.settings)
    started.start()
    environment = Path(f"/proc/{started.pid}/environ").read_bytes()
    assert b"s3cret-value" not in environment and b"app:pw" not in environment
    assert b"another-one" not in environment
    assert b"HF_HUB_OFFLINE=1" in environment


def test_a_file_over_the_cpu_time_limit_fails_explained_and_the_next_one_is_trained(
    ctx: Context, assistant_id: int
) -> None:
    frugal = derived(ctx, training_cpu_seconds=1)
    slow = queue(ctx, assistant_id, "orders.txt", long_text(SLOW))
    assert train_now(frugal, slow) is False
    assert_failed_explained(ctx, slow, "too_slow", "more than 1 second of processing time")
    quick = queue(ctx, assistant_id, "note.txt", note(1))
    assert train_now(frugal, quick) is True, file_row(ctx, quick).error_message
    assert index_version(ctx, assistant_id) == 1


def test_a_file_over_the_wall_clock_limit_fails_explained_and_the_next_one_is_trained(
    ctx: Context, assistant_id: int
) -> None:
    hurried = derived(ctx, training_wall_seconds=1)
    slow = queue(ctx, assistant_id, "orders.txt", long_text(SLOW))
    assert train_now(hurried, slow) is False
    assert_failed_explained(ctx, slow, "too_slow", "took longer than 1 second")
    quick = queue(ctx, assistant_id, "note.txt", note(1))
    assert train_now(ctx, quick) is True


def test_a_file_that_needs_more_memory_than_allowed_fails_explained(
    ctx: Context, assistant_id: int
) -> None:
    """The limit is set 150 MB above what the training process uses with its model
    loaded; 40 MB of text needs several times that to be cut into passages."""
    usual = sandbox.shared(ctx.settings)
    usual.start()
    assert usual.memory_in_use
    tight = derived(
        ctx,
        training_memory_mb=usual.memory_in_use // MIB + 150,
        max_upload_bytes=64 * MIB,
    )
    words = b"Parcels leave the shop every morning and reach the customer by noon. "
    big = queue(tight, assistant_id, "big.txt", words * (40 * MIB // len(words)))
    assert train_now(tight, big) is False
    assert_failed_explained(ctx, big, "too_large", "needs more memory than the")
    quick = queue(tight, assistant_id, "note.txt", note(1))
    assert train_now(tight, quick) is True  # a fresh process, under the same limit


def test_a_training_process_that_dies_mid_file_fails_it_explained_and_goes_on(
    ctx: Context, assistant_id: int
) -> None:
    good = queue(ctx, assistant_id, "good.txt", note(1))
    assert train_now(ctx, good) is True
    before = (index_version(ctx, assistant_id), chunk_rows(ctx, assistant_id=assistant_id))
    doomed = queue(ctx, assistant_id, "orders.txt", long_text(80))

    def kill_it(percent: int) -> None:
        pid = sandbox.shared(ctx.settings).pid
        if percent == 20 and pid is not None:
            os.kill(pid, signal.SIGKILL)

    assert training.claim_file(ctx, file_id=doomed)
    assert training.process_file(ctx, file_id=doomed, on_progress=kill_it) is False
    assert_failed_explained(ctx, doomed, "crashed", "stopped the training process")
    assert (index_version(ctx, assistant_id), chunk_rows(ctx, assistant_id=assistant_id)) == before
    assert file_row(ctx, good).status == "ready"
    after = queue(ctx, assistant_id, "note.txt", note(2))
    assert train_now(ctx, after) is True


def test_a_file_in_training_when_the_worker_stops_goes_back_to_the_queue(
    ctx: Context, assistant_id: int
) -> None:
    file_id = queue(ctx, assistant_id, "orders.txt", long_text(80))

    def stop_at(percent: int) -> None:
        if percent == 20:
            sandbox.close_all()

    assert training.claim_file(ctx, file_id=file_id)
    with pytest.raises(sandbox.SandboxClosed):
        training.process_file(ctx, file_id=file_id, on_progress=stop_at)
    file = file_row(ctx, file_id)
    assert (file.status, file.attempts, file.leased_until) == ("queued", 0, None)
    assert file_parts(ctx, file_id) > 0
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}


def test_a_training_process_whose_memory_grew_too_much_ends_after_its_file_and_a_fresh_one_goes_on(
    tmp_path: Path,
) -> None:
    from chatmeter.knowledge.limits import ExtractionLimits
    from chatmeter.training.child import Job

    limits = ExtractionLimits()

    def job(number: int) -> Job:
        path = tmp_path / f"note{number}.txt"
        path.write_bytes(note(number))
        return Job(
            path=str(path),
            filename=path.name,
            max_bytes=limits.max_bytes,
            max_unpacked_bytes=limits.max_unpacked_bytes,
            max_pages=limits.max_pages,
            max_chunks=limits.max_chunks,
            passages_left=1000,
            passages_limit=1000,
            cpu_seconds=600,
        )

    def pids_of(box: sandbox.Sandbox) -> list[int | None]:
        pids = []
        try:
            for number in (1, 2):
                done = box.run(job(number), wall_seconds=600, on_progress=lambda _: None)
                assert len(done.pieces) == 1 and len(done.sentence_vectors) == 1
                pids.append(box.pid)
        finally:
            box.close()
        return pids

    # Whatever its memory did, it is past "loaded minus 2 GiB": each file in a fresh
    # process, each trained.
    always = sandbox.Sandbox(memory_bytes=2048 * MIB, growth_bytes=-2048 * MIB)
    assert len(set(pids_of(always))) == 2
    # A quarter of the limit, the default: small files in one process.
    assert len(set(pids_of(sandbox.Sandbox(memory_bytes=2048 * MIB)))) == 1
