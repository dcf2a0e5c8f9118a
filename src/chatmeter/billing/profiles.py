"""An account's billing profile: who it is on its invoices (``billing.details``) and the
card its payment gateway keeps for it.

One row per account, made the first time something is written there; until then the
defaults apply.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from chatmeter.billing.models import BillingProfile


def get_or_create(session: Session, account_id: int) -> BillingProfile:
    """The account's profile, made now if it has none.

    The insert does nothing when a concurrent transaction made the row first (it waits
    for that one to commit), so two first writers never collide.
    """
    profile = session.get(BillingProfile, account_id)
    if profile is not None:
        return profile
    if session.get_bind().dialect.name == "postgresql":
        made_here = postgresql.insert(BillingProfile).values(account_id=account_id)
        session.execute(made_here.on_conflict_do_nothing(index_elements=["account_id"]))
    else:  # SQLite: its writers take turns (BEGIN IMMEDIATE), but say so all the same
        statement = sqlite.insert(BillingProfile).values(account_id=account_id)
        session.execute(statement.on_conflict_do_nothing(index_elements=["account_id"]))
    made = session.get(BillingProfile, account_id)
    assert made is not None
    return made
