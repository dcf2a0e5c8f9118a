"""One row per named job: who may run it now, and when it last ran."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from chatmeter.db import Base, UTCDateTime


class JobLease(Base):
    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(100), default=None)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_result: Mapped[str | None] = mapped_column(String(1000), default=None)
