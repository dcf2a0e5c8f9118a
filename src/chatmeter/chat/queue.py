"""Admission to a model: a few turns generate, a bounded number wait, the rest hear "busy".

Why this exists: a model generates one answer at a time (the bundled llama.cpp
model) or a few (a model server). Turns that waited for it inside the web
server's worker threads once took every thread, while the turn holding the
model needed a thread to go on: the whole product hung for good. So:

- A turn is admitted before anything is reserved (``admit``): there is a place
  for it, or it gets ``Busy`` at once (503 with ``Retry-After``).
- An admitted turn waits for its slot in the event loop (``Ticket.wait``),
  holding no thread; a visitor who leaves gives the place back.
- The slot's generation runs on the queue's own threads, never the web
  server's, and hands its text to the response through memory: the model is
  never held while a byte is written to the network.

Fairness: no account may fill more than ``per_account`` waiting places, and
freed slots go to the waiting accounts in turn, so one customer's crowd
cannot lock out another customer's visitors.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from chatmeter.errors import Busy
from chatmeter.telemetry.metrics import QUEUE_RUNNING, QUEUE_WAITING

FIRST_GUESS_SECONDS = 5.0  # how long a generation takes, until one has been measured
SMOOTHING = 0.2  # weight of the newest generation in the running average
MAX_RETRY_AFTER = 60


class _State(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    LEFT = "left"


@dataclass(frozen=True)
class QueueFigures:
    """A moment's view of the queue (benchmarks, tests, metrics)."""

    slots: int
    places: int
    running: int
    waiting: int
    admitted: int
    refused: int


class Ticket:
    """One turn's place in a queue: waiting, then running, then left (exactly once)."""

    def __init__(self, queue: GenerationQueue, account_id: int) -> None:
        self.queue = queue
        self.account_id = account_id
        self._state = _State.WAITING
        self._woken: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self._state is _State.RUNNING

    async def wait(self) -> None:
        """Wait, without a thread, until this turn may generate. Cancelled: the place is freed."""
        loop = asyncio.get_running_loop()
        with self.queue._lock:
            if self._state is _State.RUNNING:
                return
            if self._state is _State.LEFT:
                raise RuntimeError("this ticket has left its queue")
            self._loop, self._woken = loop, loop.create_future()
        try:
            await self._woken
        except BaseException:
            self.leave()  # the visitor went away: give the place (or the slot) back
            raise

    def leave(self) -> None:
        """Give back the place or the slot; the next waiting turn may go. Idempotent."""
        self.queue._leave(self)

    def _start(self) -> None:
        """Called under the queue's lock when this ticket is given a slot."""
        self._state = _State.RUNNING
        if self._loop is not None and self._woken is not None:
            # RuntimeError: the event loop is gone (shutting down); nobody waits any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, self._woken)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class GenerationQueue:
    """``slots`` generations at once, ``places`` turns waiting; the rest are refused."""

    def __init__(self, *, name: str, slots: int, places: int, per_account: int) -> None:
        if slots < 1 or places < 0 or per_account < 0:
            raise ValueError("a queue needs a slot, and no negative number of places")
        self.name = name
        self.slots = slots
        self.places = places
        self.per_account = min(per_account, places)
        self._lock = threading.Lock()
        self._running = 0
        # Waiting tickets by account; the order of the accounts is the order they are served in.
        self._waiting: OrderedDict[int, deque[Ticket]] = OrderedDict()
        self._waiting_count = 0
        self._admitted = self._refused = 0
        self._seconds = FIRST_GUESS_SECONDS
        self._executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"gen-{name}")
        self._gauges = (QUEUE_WAITING.labels(name), QUEUE_RUNNING.labels(name))

    def admit(self, *, account_id: int) -> Ticket:
        """A place in the queue (or a slot at once), or ``Busy`` with a time to come back."""
        ticket = Ticket(self, account_id)
        with self._lock:
            if self._running < self.slots and not self._waiting_count:
                self._running += 1
                ticket._state = _State.RUNNING
            else:
                full = self._waiting_count >= self.places
                if full or len(self._waiting.get(account_id, ())) >= self.per_account:
                    self._refused += 1
                    raise Busy(retry_after=self._retry_after())
                self._waiting.setdefault(account_id, deque()).append(ticket)
                self._waiting_count += 1
            self._admitted += 1
            self._report()
        return ticket

    def run(self, ticket: Ticket, job: Callable[[], Any]) -> Future[Any]:
        """Run a running ticket's generation on the queue's own thread; the slot is freed after."""
        if not ticket.running:
            raise RuntimeError("only a running ticket may generate")

        def timed() -> Any:
            started = time.monotonic()
            try:
                return job()
            finally:
                self._measured(time.monotonic() - started)
                ticket.leave()

        return self._executor.submit(timed)

    def figures(self) -> QueueFigures:
        with self._lock:
            return QueueFigures(
                self.slots,
                self.places,
                self._running,
                self._waiting_count,
                self._admitted,
                self._refused,
            )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- internals (the lock is held wherever state changes) -----------------------------

    def _leave(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._state is _State.WAITING:
                mine = self._waiting.get(ticket.account_id)
                if mine is not None and ticket in mine:
                    mine.remove(ticket)
                    self._waiting_count -= 1
                    if not mine:
                        del self._waiting[ticket.account_id]
            elif ticket._state is _State.RUNNING:
                self._running -= 1
                self._hand_on()
            ticket._state = _State.LEFT
            self._report()

    def _hand_on(self) -> None:
        """Give free slots to waiting turns, one account after another."""
        while self._running < self.slots and self._waiting_count:
            account_id, mine = next(iter(self._waiting.items()))
            ticket = mine.popleft()
            self._waiting_count -= 1
            del self._waiting[account_id]
            if mine:  # the account goes to the back of the line
                self._waiting[account_id] = mine
            self._running += 1
            ticket._start()

    def _report(self) -> None:
        """The queue's depth for ``/metrics``: two gauge writes, no I/O."""
        waiting, running = self._gauges
        waiting.set(self._waiting_count)
        running.set(self._running)

    def _measured(self, seconds: float) -> None:
        with self._lock:
            self._seconds += SMOOTHING * (seconds - self._seconds)

    def _retry_after(self) -> int:
        ahead = self._running + self._waiting_count
        return max(1, min(MAX_RETRY_AFTER, math.ceil(ahead / self.slots * self._seconds)))
