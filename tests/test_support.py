"""The shared test helpers hold under the conditions the whole suite creates."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import aio


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


async def _fail() -> None:
    raise LookupError("from the coroutine")


def test_aio_run_works_while_this_thread_already_runs_an_event_loop() -> None:
    """What Playwright's synchronous API leaves behind during the browser tests: a
    running loop in the main thread. ``asyncio.run`` refuses there; ``aio.run`` must not."""

    async def inside_a_running_loop() -> int:
        refused = _answer()
        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(refused)  # the failure CI met
        refused.close()  # never started, so never awaited: close it without a warning
        return aio.run(_answer())

    # A loop of its own on a thread of its own: the main thread may hold Playwright's.
    assert aio.run(inside_a_running_loop()) == 42


def test_aio_run_hands_back_the_coroutines_own_error() -> None:
    with pytest.raises(LookupError, match="from the coroutine"):
        aio.run(_fail())
