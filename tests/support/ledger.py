"""The two things a test may mean by "the ledger is clean".

- ``assert_ledger_clean``: ``chatmeter ledger verify`` finds nothing wrong with any
  account (balances match their entries and grants). Holds may still be pending.
- ``assert_ledger_settled``: clean, and no hold is left pending: every turn or API
  hold the test began was settled, released or expired.
"""

from __future__ import annotations

from sqlalchemy import select

from chatmeter.chat import caps
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.ledger.models import Hold, HoldStatus
from chatmeter.ledger.verify import verify


def assert_ledger_clean(where: Context | Database) -> None:
    """``chatmeter ledger verify`` sees at least one account and finds nothing wrong."""
    db = where.db if isinstance(where, Context) else where
    with db.read() as session:
        if isinstance(where, Context):  # and the assistants' monthly caps, as the CLI does
            reports = caps.verify(session, now=where.clock.now())
        else:
            reports = verify(session)
    assert reports, "verify saw no accounts"
    assert all(r.ok for r in reports), [r.problems for r in reports if not r.ok]


def assert_ledger_settled(where: Context | Database) -> None:
    """The ledger is clean and no hold is pending."""
    assert_ledger_clean(where)
    db = where.db if isinstance(where, Context) else where
    with db.read() as session:
        pending = session.scalars(select(Hold.id).where(Hold.status == HoldStatus.PENDING)).all()
    assert pending == [], f"holds still pending: {pending}"
