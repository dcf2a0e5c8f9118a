"""What every workflow needs of the application: its settings, database and clock.

A workflow names what more it needs as a protocol built on ``Basics``
(``billing.charges.Payments``, ``chat.turn.ChatServices``,
``training.job.TrainingServices``); ``chatmeter.context.Context`` satisfies them
all, and the domain never imports the Context itself.
"""

from __future__ import annotations

from typing import Protocol

from chatmeter.clock import Clock
from chatmeter.config import Settings
from chatmeter.db import Database


class Basics(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def clock(self) -> Clock: ...
