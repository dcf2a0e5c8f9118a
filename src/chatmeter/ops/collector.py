"""Python's garbage collector in a serving process: what loaded at startup is not scanned again.

A web process holds about 200,000 Python objects once its app and models are
loaded (SQLAlchemy's mappers, FastAPI's routes, pydantic's schemas, the
tokenizers). CPython's full collection visits every one of them: about 100 ms on
a slow core, taken every few hundred requests in the middle of one, where it
shows as the p99 (``docs/benchmarks.md``, "The garbage collector of a serving
process"). What startup made lives as long as the process, so ``ready_to_serve``
collects once, then freezes what is left (``gc.freeze``): later collections visit
only the objects made since, and free them as before.

Called once per serving process, as the last step before it takes connections
(``chatmeter serve``, and each child of ``serve --workers N``). Not in apps built
for tests, which come and go in one process: a frozen object is never collected,
so a cycle among them would be kept for good.
"""

from __future__ import annotations

import gc


def ready_to_serve() -> int:
    """Collect, then exempt every object alive now from later collections; returns how
    many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
