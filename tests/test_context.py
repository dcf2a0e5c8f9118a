"""The per-process models and caches a Context loads on first use."""

from __future__ import annotations

import threading

from chatmeter.config import Settings
from chatmeter.context import Context


def first_use(ctx: Context, name: str) -> object:
    """``getattr(ctx, name)`` on a thread of its own; fails rather than hangs if it never
    returns (a lazy property taking the context's lock twice)."""
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(getattr(ctx, name)), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), f"ctx.{name} never returned: it waits on itself"
    return got[0]


def test_sentence_vectors_before_the_embedder_is_loaded(settings: Settings) -> None:
    # A fresh process whose first use is grounding (the benchmarks' replay, a worker):
    # the sentence cache needs the embedder, which is made under the same lock.
    ctx = Context.from_settings(settings)
    cache = first_use(ctx, "sentence_vectors")
    assert cache is ctx.sentence_vectors
    assert ctx._embedder is not None
    assert first_use(ctx, "embedder") is ctx.embedder


def test_each_lazy_part_is_made_once(settings: Settings) -> None:
    ctx = Context.from_settings(settings)
    for name in ("embedder", "vectors", "limiter", "hold_keeper", "sentence_vectors"):
        assert first_use(ctx, name) is getattr(ctx, name)
    ctx.close()
