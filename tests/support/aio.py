"""Run a coroutine to its end from a synchronous test, whatever else the session holds.

Playwright's synchronous API (the browser tests' session fixture) keeps an event loop
running in the main thread for as long as the browser lives, so a plain
``asyncio.run`` in any test collected after the first browser test fails with
"cannot be called from a running event loop". A thread of its own has no loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own; returns the result or raises what it raised."""
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # handed back to the test's thread below
            outcome["error"] = error

    thread = threading.Thread(target=body, name="test-event-loop")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
