"""Keeps the holds of this process's running chat turns alive, so only a dead turn's expires.

A chat turn reserves tokens with a short time to live (``CHATMETER_CHAT_HOLD_SECONDS``):
if its process dies, the hold-expiry job gives the tokens back. A turn that is
alive, however long it waits in the queue or streams, must keep its hold: this
keeper extends every live hold of the process in one statement, four times per
time to live. Should a hold end anyway (the process stalled past the time to
live), the turn is told to stop generating at once, and it is still charged
for what it used (``ledger.charge_lost_hold``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from chatmeter.clock import Clock
from chatmeter.db import Database
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import HoldOwner

log = logging.getLogger("chatmeter.chat")

BEATS_PER_TTL = 4


class HoldKeeper:
    def __init__(self, *, db: Database, clock: Clock, ttl_seconds: int) -> None:
        self._db = db
        self._clock = clock
        self._ttl = dt.timedelta(seconds=ttl_seconds)
        self.interval = ttl_seconds / BEATS_PER_TTL
        self._lock = threading.Lock()
        self._live: dict[int, threading.Event] = {}  # hold id → the turn's stop signal
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, hold_id: int, stop: threading.Event) -> None:
        """Keep ``hold_id`` alive until ``forget``; set ``stop`` should it be lost."""
        with self._lock:
            self._live[hold_id] = stop
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="chatmeter-hold-keeper", daemon=True
                )
                self._thread.start()

    def forget(self, hold_id: int) -> None:
        with self._lock:
            self._live.pop(hold_id, None)

    @property
    def live(self) -> set[int]:
        with self._lock:
            return set(self._live)

    def beat(self) -> set[int]:
        """Extend every live hold now; returns the ids found lost (and tells their turns)."""
        with self._lock:
            live = dict(self._live)
        if not live:
            return set()
        with self._db.uow() as uow:
            kept = ledger.extend_holds(
                uow.session,
                hold_ids=sorted(live),
                owner=HoldOwner.CHAT,
                until=self._clock.now() + self._ttl,
            )
            uow.commit()
        lost = set(live) - kept
        with self._lock:
            for hold_id in lost:
                # Settled or released meanwhile are no longer here; the others ended without us.
                stop = self._live.pop(hold_id, None)
                if stop is not None:
                    log.error("the hold %s of a running chat turn ended; stopping it", hold_id)
                    stop.set()
        return lost

    def close(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a database hiccup must not end the keeper
                log.exception("could not extend the holds of running chat turns")
