"""The rate limiter on its own: a limit is a limit also when messages arrive together."""

from __future__ import annotations

import threading

import pytest

from chatmeter.chat.limits import ChatLimiter
from chatmeter.config import Env, Settings
from chatmeter.errors import RateLimited

SENDERS = 24


def passed_together(limiters: list[ChatLimiter], *, visitor: str) -> int:
    """How many of SENDERS messages from one visitor, sent at the same moment, get through."""
    start = threading.Barrier(SENDERS)
    passed: list[int] = []

    def send(n: int) -> None:
        start.wait(timeout=30)
        try:
            limiters[n % len(limiters)].check(assistant_id=1, visitor=visitor)
        except RateLimited:
            return
        passed.append(n)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return len(passed)


@pytest.mark.parametrize("storage", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_simultaneous_messages_never_pass_a_limit(
    request: pytest.FixtureRequest, storage: str
) -> None:
    """Messages from one visitor arriving together, through one process's limiter (memory)
    or two processes' limiters sharing Redis, pass exactly as often as the limit allows."""
    redis_url = request.getfixturevalue("redis_db") if storage == "redis" else None
    settings = Settings(
        _env_file=None,
        env=Env.TEST,
        database_url="sqlite://",
        redis_url=redis_url,
        chat_visitor_rate="3/minute",
    )
    limiters = (
        [ChatLimiter(settings), ChatLimiter(settings)] if redis_url else [ChatLimiter(settings)]
    )
    passed = [passed_together(limiters, visitor=f"visitor-{n}") for n in range(5)]
    assert passed == [3] * 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_windows_count_a_moving_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-memory windows let an entry count for exactly its window, per key, and forget
    the keys nobody used for a whole window."""
    from limits import parse

    from chatmeter.chat import limits

    clock = FakeClock()
    monkeypatch.setattr(limits.time, "monotonic", clock)
    monkeypatch.setattr(limits, "SWEEP_EVERY", 4)
    windows = limits.MemoryWindows()
    item = parse("2/minute")
    assert [windows.hit(item, "a") for _ in range(3)] == [True, True, False]
    assert windows.test(item, "b") and not windows.test(item, "a")
    clock.now += 30
    assert not windows.hit(item, "a")  # both entries still inside the minute
    clock.now += 30
    assert not windows.test(item, "a")  # exactly a minute: the first entries still count
    clock.now += 0.001
    assert windows.hit(item, "a") and windows.hit(item, "a") and not windows.hit(item, "a")
    windows.hit(item, "b")  # the 4th hit: a sweep, "a"'s and "b"'s entries are recent
    assert len(windows._windows) == 2
    clock.now += 61
    for key in ("c", "d", "e", "f"):  # the 8th hit sweeps "a" and "b" away
        windows.hit(item, key)
    assert sorted(windows._windows) == sorted(item.key_for(k) for k in "cdef")
    windows.clear()
    assert windows.test(item, "c")
