"""A state machine drives the real ledger and billing services against a small model.

Hypothesis picks random sequences of what happens to one account in real
life — operator grants and debits, chat turns that reserve, settle, release
or crash (hold expiry), retries of the same request, purchases, and months
passing with the renewal job — and runs them on a real SQLite database with a
clock it moves. A model in plain Python keeps what each grant and hold should
hold. After every step:

- the balance row's available and reserved tokens equal the model's;
- nothing is negative;
- ``verify()`` finds nothing wrong with any account;
- tokens are conserved: granted = available + reserved + spent + expired + debited,
  both in the model and in the ledger entries.

The model is deliberately simple: grants are buckets spent soonest-expiring
first (never-expiring last, ties by creation order); unused tokens of a hold go
back to the grants it took last; a grant that expired meanwhile keeps none.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import func, select

from chatmeter.accounts import opening
from chatmeter.billing import periods, purchases, renewals
from chatmeter.billing.gateways import ManualGateway
from chatmeter.clock import FixedClock
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.errors import Conflict, HoldNotYours, IdempotencyConflict, InsufficientTokens
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import (
    Balance,
    EntryKind,
    Grant,
    GrantSource,
    HoldOwner,
    LedgerEntry,
)
from tests.support.context import START
from tests.support.ledger import assert_ledger_clean

ZONE = "Asia/Kolkata"  # months begin at 18:30 UTC: the model must not assume UTC midnights
FREE_TOKENS = 300
PACKAGE = 5000
NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass
class ModelGrant:
    key: str
    seq: int  # creation order: the database's ids increase the same way
    remaining: int
    expires_at: dt.datetime | None
    expired: bool = False


@dataclass
class ModelHold:
    key: str
    hold_id: int
    amount: int
    ttl: int
    expires_at: dt.datetime
    taken: list[tuple[ModelGrant, int]]  # in the order they were taken
    status: str = "pending"
    figures: tuple[int, int] | None = None
    charged: bool = False  # charged after it was lost (expired or released) under a turn


@dataclass
class Totals:
    granted: int = 0
    spent: int = 0
    expired: int = 0
    debited: int = 0


@dataclass
class Model:
    grants: list[ModelGrant] = field(default_factory=list)
    holds: list[ModelHold] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    quantity: int = 0
    renewed: str = ""

    @property
    def available(self) -> int:
        return sum(g.remaining for g in self.grants if not g.expired)

    @property
    def reserved(self) -> int:
        return sum(h.amount for h in self.holds if h.status == "pending")

    def add_grant(self, key: str, amount: int, expires_at: dt.datetime | None) -> None:
        self.grants.append(ModelGrant(key, len(self.grants), amount, expires_at))
        self.totals.granted += amount

    def take(self, amount: int) -> list[tuple[ModelGrant, int]]:
        live = sorted(
            (g for g in self.grants if not g.expired and g.remaining > 0),
            key=lambda g: (g.expires_at or NEVER, g.seq),
        )
        taken, left = [], amount
        for grant in live:
            if not left:
                break
            part = min(grant.remaining, left)
            grant.remaining -= part
            left -= part
            taken.append((grant, part))
        assert left == 0, "the model took more than it holds"
        return taken

    def close(self, hold: ModelHold, status: str, used: int = 0) -> None:
        unused = hold.amount - used
        for grant, part in reversed(hold.taken):
            back = min(part, unused)
            if grant.expired:
                self.totals.expired += back
            else:
                grant.remaining += back
            unused -= back
        hold.status = status
        self.totals.spent += used

    def expire_grants(self, due_by: dt.datetime) -> None:
        for grant in self.grants:
            if not grant.expired and grant.expires_at is not None and grant.expires_at <= due_by:
                self.totals.expired += grant.remaining
                grant.remaining = 0
                grant.expired = True


class LedgerMachine(RuleBasedStateMachine):
    """One account, its real database and clock, and the model beside them."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="chatmeter-stateful-")
        url = f"sqlite:///{self.tmp}/ledger.db"
        self.db = Database(url)
        self.db.create_all()
        self.clock = FixedClock(START)
        app_settings = Settings(
            _env_file=None,
            env=Env.TEST,
            database_url=url,
            data_dir=Path(self.tmp) / "var",
            worker="none",
            demo=False,
            free_tokens=FREE_TOKENS,
        )
        self.ctx = Context(
            settings=app_settings,
            db=self.db,
            clock=self.clock,
            gateway=ManualGateway(auto_approve=True),
        )
        with self.db.uow() as uow:
            owner = opening.open_account(
                uow.session,
                settings=app_settings,
                email="owner@example.com",
                timezone=ZONE,
                now=START,
            )
            uow.commit()
            self.account = owner.account_id
        self.model = Model(renewed=self.period)
        self.model.add_grant(f"free:{self.period}", FREE_TOKENS, periods.ends_at(self.period, ZONE))
        self.counter = 0

    def teardown(self) -> None:
        self.db.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------

    @property
    def now(self) -> dt.datetime:
        return self.clock.now()

    @property
    def period(self) -> str:
        return periods.period_of(self.now, ZONE)

    def new_key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def entry_count(self) -> int:
        with self.db.read() as session:
            return session.scalar(select(func.count()).select_from(LedgerEntry)) or 0

    def holds_in(self, *statuses: str) -> list[ModelHold]:
        return [h for h in self.model.holds if h.status in statuses]

    # --- rules: the operator ------------------------------------------------------

    @rule(
        amount=st.integers(1, 20_000),
        expires_in=st.none()
        | st.integers(1, 45 * 24 * 60).map(lambda minutes: dt.timedelta(minutes=minutes)),
    )
    def grant(self, amount: int, expires_in: dt.timedelta | None) -> None:
        """An operator's adjustment, expiring some day or never."""
        key = self.new_key("adjust")
        expires_at = None if expires_in is None else self.now + expires_in
        with self.db.uow() as uow:
            ledger.grant(
                uow.session,
                account_id=self.account,
                amount=amount,
                source=GrantSource.ADJUSTMENT,
                key=key,
                period=self.period,
                now=self.now,
                expires_at=expires_at,
            )
            uow.commit()
        self.model.add_grant(key, amount, expires_at)

    @rule(data=st.data())
    def debit(self, data: st.DataObject) -> None:
        """An operator's correction: refused when it asks for more than is available."""
        available = self.model.available
        amount = data.draw(st.integers(1, available + 50), label="debit")
        before = self.entry_count()
        with self.db.uow() as uow:
            if amount > available:
                with pytest.raises(InsufficientTokens):
                    ledger.debit(
                        uow.session,
                        account_id=self.account,
                        amount=amount,
                        period=self.period,
                        now=self.now,
                    )
                assert self.entry_count() == before
                return
            ledger.debit(
                uow.session,
                account_id=self.account,
                amount=amount,
                period=self.period,
                now=self.now,
            )
            uow.commit()
        self.model.take(amount)
        self.model.totals.debited += amount

    # --- rules: chat turns --------------------------------------------------------

    @rule(data=st.data(), ttl=st.sampled_from([1, 60, 600, 3600, 86_400]))
    def reserve(self, data: st.DataObject, ttl: int) -> None:
        """A chat turn holds an estimate; it must succeed exactly when enough is available."""
        available = self.model.available
        too_much = data.draw(st.integers(0, 3), label="ask too much") == 0  # one time in four
        tokens = data.draw(
            st.integers(available + 1, available + 500)
            if too_much or not available
            else st.integers(1, available),
            label="tokens",
        )
        key = self.new_key("turn")
        before = self.entry_count()
        with self.db.uow() as uow:
            if tokens > available:
                with pytest.raises(InsufficientTokens):
                    ledger.reserve(
                        uow.session,
                        account_id=self.account,
                        tokens=tokens,
                        key=key,
                        ttl_seconds=ttl,
                        now=self.now,
                    )
                assert self.entry_count() == before
                return
            hold = ledger.reserve(
                uow.session,
                account_id=self.account,
                tokens=tokens,
                key=key,
                ttl_seconds=ttl,
                now=self.now,
            )
            uow.commit()
        self.model.holds.append(
            ModelHold(
                key=key,
                hold_id=hold.id,
                amount=tokens,
                ttl=ttl,
                expires_at=self.now + dt.timedelta(seconds=ttl),
                taken=self.model.take(tokens),
            )
        )

    @precondition(lambda self: self.holds_in("pending"))
    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        """The turn ends: some of the hold was used (context + generation), the rest returns."""
        hold = data.draw(st.sampled_from(self.holds_in("pending")), label="hold")
        used = data.draw(st.integers(0, hold.amount), label="used")
        context = data.draw(st.integers(0, used), label="context")
        with self.db.uow() as uow:
            settled = ledger.settle(
                uow.session,
                account_id=self.account,
                hold_id=hold.hold_id,
                context=context,
                generation=used - context,
                now=self.now,
            )
            uow.commit()
        assert settled.consumed == used
        hold.figures = (context, used - context)
        self.model.close(hold, "settled", used)

    @precondition(lambda self: self.holds_in("pending"))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """The turn failed before the model answered: everything returns."""
        hold = data.draw(st.sampled_from(self.holds_in("pending")), label="hold")
        with self.db.uow() as uow:
            ledger.release(uow.session, account_id=self.account, hold_id=hold.hold_id, now=self.now)
            uow.commit()
        self.model.close(hold, "released")

    @rule(seconds=st.integers(1, 120) | st.integers(1, 3 * 3600))
    def time_passes_and_stale_holds_expire(self, seconds: int) -> None:
        """The clock moves; the hold-expiry job releases turns that crashed."""
        self.clock.advance(seconds=seconds)
        with self.db.uow() as uow:
            expired = ledger.expire_holds(uow.session, now=self.now)
            uow.commit()
        due = [h for h in self.holds_in("pending") if h.expires_at <= self.now]
        assert expired == len(due)
        for hold in sorted(due, key=lambda h: h.hold_id):
            self.model.close(hold, "expired")

    @precondition(lambda self: self.holds_in("pending"))
    @rule(data=st.data())
    def a_live_turn_keeps_its_hold(self, data: st.DataObject) -> None:
        """A turn still running extends its hold (``chat.keeper``): it is not due any more."""
        hold = data.draw(st.sampled_from(self.holds_in("pending")), label="hold")
        until = self.now + dt.timedelta(seconds=hold.ttl)
        before = self.entry_count()
        with self.db.uow() as uow:
            kept = ledger.extend_holds(
                uow.session, hold_ids=[hold.hold_id], owner=HoldOwner.API, until=until
            )
            uow.commit()
        assert kept == {hold.hold_id}
        assert self.entry_count() == before
        hold.expires_at = until

    @precondition(lambda self: [h for h in self.holds_in("released", "expired") if not h.charged])
    @rule(data=st.data())
    def a_turn_that_lost_its_hold_is_charged_what_is_left(self, data: st.DataObject) -> None:
        """A turn whose hold ended under it pays what it used, as far as the balance goes;
        a retry returns the first charge and writes nothing."""
        lost = [h for h in self.holds_in("released", "expired") if not h.charged]
        hold = data.draw(st.sampled_from(lost), label="hold")
        used = data.draw(st.integers(0, hold.amount + 500), label="used")
        context = data.draw(st.integers(0, used), label="context")
        charged = min(used, self.model.available)
        with self.db.uow() as uow:
            entry = ledger.charge_lost_hold(
                uow.session,
                account_id=self.account,
                hold_id=hold.hold_id,
                context=context,
                generation=used - context,
                now=self.now,
            )
            uow.commit()
            first = entry.id
        assert entry.consumed == charged
        assert (entry.context_tokens, entry.generation_tokens) == (
            min(context, charged),
            charged - min(context, charged),
        )
        self.model.take(charged)
        self.model.totals.spent += charged
        hold.charged = True
        before = self.entry_count()
        with self.db.uow() as uow:
            again = ledger.charge_lost_hold(
                uow.session,
                account_id=self.account,
                hold_id=hold.hold_id,
                context=context,
                generation=used - context,
                now=self.now,
            )
            uow.commit()
        assert again.id == first and self.entry_count() == before

    @precondition(lambda self: self.holds_in("pending"))
    @rule(data=st.data())
    def nobody_else_finishes_a_hold(self, data: st.DataObject) -> None:
        """A hold made through the API is not a chat turn's to settle, release or extend."""
        hold = data.draw(st.sampled_from(self.holds_in("pending")), label="hold")
        before = self.entry_count()
        with self.db.uow() as uow:
            with pytest.raises(HoldNotYours):
                ledger.settle(
                    uow.session,
                    account_id=self.account,
                    hold_id=hold.hold_id,
                    context=0,
                    generation=0,
                    now=self.now,
                    owner=HoldOwner.CHAT,
                )
            with pytest.raises(HoldNotYours):
                ledger.release(
                    uow.session,
                    account_id=self.account,
                    hold_id=hold.hold_id,
                    now=self.now,
                    owner=HoldOwner.CHAT,
                )
            far = self.now + dt.timedelta(days=1)
            assert (
                ledger.extend_holds(
                    uow.session, hold_ids=[hold.hold_id], owner=HoldOwner.CHAT, until=far
                )
                == set()
            )
            uow.commit()
        assert self.entry_count() == before

    # --- rules: retries -----------------------------------------------------------

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), same=st.booleans())
    def retry_reserve(self, data: st.DataObject, same: bool) -> None:
        """The same key and request returns the first hold and writes nothing; another request
        with that key is refused."""
        hold = data.draw(st.sampled_from(self.model.holds), label="hold")
        before = self.entry_count()
        with self.db.uow() as uow:
            if same:
                again = ledger.reserve(
                    uow.session,
                    account_id=self.account,
                    tokens=hold.amount,
                    key=hold.key,
                    ttl_seconds=hold.ttl,
                    now=self.now,
                )
                assert again.id == hold.hold_id
                uow.commit()
            else:
                other_tokens = data.draw(st.booleans(), label="change tokens")
                with pytest.raises(IdempotencyConflict):
                    ledger.reserve(
                        uow.session,
                        account_id=self.account,
                        tokens=hold.amount + 1 if other_tokens else hold.amount,
                        key=hold.key,
                        ttl_seconds=hold.ttl if other_tokens else hold.ttl % 86_400 + 1,
                        now=self.now,
                    )
        assert self.entry_count() == before

    @precondition(lambda self: self.holds_in("settled"))
    @rule(data=st.data(), same=st.booleans())
    def retry_settle(self, data: st.DataObject, same: bool) -> None:
        """Settling again with the same figures is a no-op; other figures are refused."""
        hold = data.draw(st.sampled_from(self.holds_in("settled")), label="hold")
        assert hold.figures is not None
        context, generation = hold.figures
        if not same:
            context += 1
        before = self.entry_count()
        with self.db.uow() as uow:
            if same:
                again = ledger.settle(
                    uow.session,
                    account_id=self.account,
                    hold_id=hold.hold_id,
                    context=context,
                    generation=generation,
                    now=self.now,
                )
                assert again.id == hold.hold_id
                uow.commit()
            else:
                with pytest.raises(IdempotencyConflict):
                    ledger.settle(
                        uow.session,
                        account_id=self.account,
                        hold_id=hold.hold_id,
                        context=context,
                        generation=generation,
                        now=self.now,
                    )
        assert self.entry_count() == before

    @precondition(lambda self: self.holds_in("settled", "released", "expired"))
    @rule(data=st.data())
    def close_a_closed_hold(self, data: st.DataObject) -> None:
        """A finished hold cannot be finished another way; releasing twice is a no-op."""
        hold = data.draw(
            st.sampled_from(self.holds_in("settled", "released", "expired")), label="hold"
        )
        before = self.entry_count()
        with self.db.uow() as uow:
            if hold.status == "released":
                ledger.release(
                    uow.session, account_id=self.account, hold_id=hold.hold_id, now=self.now
                )
                uow.commit()
            else:
                with pytest.raises(Conflict):
                    ledger.release(
                        uow.session, account_id=self.account, hold_id=hold.hold_id, now=self.now
                    )
            if hold.status != "settled":
                with pytest.raises(Conflict):
                    ledger.settle(
                        uow.session,
                        account_id=self.account,
                        hold_id=hold.hold_id,
                        context=0,
                        generation=0,
                        now=self.now,
                    )
        assert self.entry_count() == before

    # --- rules: billing -----------------------------------------------------------

    @rule(packages=st.integers(1, 3))
    def purchase(self, packages: int) -> None:
        """Buying packages adds their tokens at once, for the rest of this month."""
        invoice = purchases.purchase(self.ctx, account_id=self.account, packages=packages)
        self.model.add_grant(
            f"invoice:{invoice.id}", packages * PACKAGE, periods.ends_at(self.period, ZONE)
        )
        self.model.quantity += packages

    @rule(offset=st.integers(0, 3 * 86_400))
    def next_month_and_renewal(self, offset: int) -> None:
        """The clock crosses into the next month (maybe at its first instant) and the job runs."""
        self.clock.set(periods.ends_at(self.period, ZONE) + dt.timedelta(seconds=offset))
        renewals.run_renewals(self.ctx)
        self._model_renewal()

    @rule()
    def renewal_job_runs_again(self) -> None:
        """Running the job when nothing is due changes nothing."""
        renewals.run_renewals(self.ctx)
        self._model_renewal()

    def _model_renewal(self) -> None:
        period = self.period
        if period <= self.model.renewed:
            return
        self.model.expire_grants(periods.starts_at(period, ZONE))
        expires_at = periods.ends_at(period, ZONE)
        if self.model.quantity:
            self.model.add_grant(f"renewal:{period}", self.model.quantity * PACKAGE, expires_at)
        self.model.add_grant(f"free:{period}", FREE_TOKENS, expires_at)
        self.model.renewed = period

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def balance_matches_the_model(self) -> None:
        with self.db.read() as session:
            balance = session.get(Balance, self.account)
            assert balance is not None
            assert (balance.available, balance.reserved) == (
                self.model.available,
                self.model.reserved,
            )
            assert balance.available >= 0 and balance.reserved >= 0
            remaining = dict(
                session.execute(
                    select(Grant.key, Grant.remaining).where(Grant.account_id == self.account)
                ).all()
            )
        assert remaining == {g.key: g.remaining for g in self.model.grants}

    @invariant()
    def verify_finds_nothing_wrong(self) -> None:
        assert_ledger_clean(self.db)

    @invariant()
    def tokens_are_conserved(self) -> None:
        totals = self.model.totals
        assert totals.granted == (
            self.model.available
            + self.model.reserved
            + totals.spent
            + totals.expired
            + totals.debited
        )
        with self.db.read() as session:
            granted, spent, expired, debited = session.execute(
                select(
                    func.coalesce(
                        func.sum(LedgerEntry.available_delta).filter(
                            LedgerEntry.kind == EntryKind.GRANT
                        ),
                        0,
                    ),
                    func.coalesce(func.sum(LedgerEntry.consumed), 0),
                    func.coalesce(func.sum(LedgerEntry.expired), 0),
                    func.coalesce(
                        -func.sum(LedgerEntry.available_delta).filter(
                            LedgerEntry.kind == EntryKind.DEBIT
                        ),
                        0,
                    ),
                ).where(LedgerEntry.account_id == self.account)
            ).one()
        assert (granted, spent, expired, debited) == (
            totals.granted,
            totals.spent,
            totals.expired,
            totals.debited,
        )


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerAgainstModel = LedgerMachine.TestCase
