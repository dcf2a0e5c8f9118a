"""The ``model`` marker kept true: a test that loads the bundled model without it fails.

``make test-fast`` leaves out the tests marked ``model``. A test that loaded the LLM,
the embedder, or the training process (which loads the embedder) without the marker
would slow the fast tier down unnoticed; here every such load is noted, and the root
conftest fails the test at teardown. A session fixture's first load counts for the
test that set it up. Nothing is replaced: the real loader runs as always.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_state: dict[str, Any] = {"allowed": True, "loads": []}


def expect_model(allowed: bool) -> None:
    """From now on, loading a model is (or is not) what the running test is marked for."""
    _state["allowed"] = allowed
    _state["loads"] = []


def unmarked_loads() -> list[str]:
    """What was loaded since ``expect_model(False)``."""
    return list(_state["loads"])


def guard_model_loading() -> None:
    from chatmeter.knowledge import embeddings
    from chatmeter.llm import local
    from chatmeter.training import sandbox

    local._load = _noting("the bundled LLM", local._load)  # type: ignore[assignment]
    for lazy in (embeddings._NUMPY_MODEL, embeddings._MODEL, embeddings._BFLOAT16_MODEL):
        lazy.get = _noting("the embedding model", lazy.get)  # type: ignore[method-assign]
    sandbox.Sandbox._started = _noting(  # type: ignore[method-assign]
        "the training process", sandbox.Sandbox._started
    )


def _noting(what: str, load: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(load)
    def noted(*args: Any, **kwargs: Any) -> Any:
        if not _state["allowed"] and what not in _state["loads"]:
            _state["loads"].append(what)
        return load(*args, **kwargs)

    return noted
