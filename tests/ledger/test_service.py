"""The ledger's verbs on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text

from chatmeter.context import Context
from chatmeter.errors import Conflict, IdempotencyConflict, InsufficientTokens, InvalidInput
from chatmeter.ledger import service as ledger
from chatmeter.ledger.models import EntryKind, Grant, GrantSource, LedgerEntry
from chatmeter.ledger.verify import verify
from tests.support.accounts import add_tokens, balance_of, new_account
from tests.support.ledger import assert_ledger_clean


def reserve(ctx: Context, account_id: int, tokens: int, key: str, ttl: int = 60) -> int:
    with ctx.db.uow() as uow:
        hold = ledger.reserve(
            uow.session,
            account_id=account_id,
            tokens=tokens,
            key=key,
            ttl_seconds=ttl,
            now=ctx.clock.now(),
        )
        uow.commit()
        return hold.id


def test_reserve_settle_spends_only_what_was_used(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 5000)
    hold_id = reserve(ctx, account, 700, "turn-1")
    assert (balance_of(ctx, account).available, balance_of(ctx, account).reserved) == (4300, 700)
    with ctx.db.uow() as uow:
        hold = ledger.settle(
            uow.session,
            account_id=account,
            hold_id=hold_id,
            context=400,
            generation=120,
            now=ctx.clock.now(),
        )
        uow.commit()
    assert hold.consumed == 520
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved, balance.balance) == (4480, 0, 4480)
    with ctx.db.read() as session:
        settle = session.scalars(
            select(LedgerEntry).where(LedgerEntry.kind == EntryKind.SETTLE)
        ).one()
    assert (settle.context_tokens, settle.generation_tokens, settle.consumed) == (400, 120, 520)
    assert settle.balance_after == 4480
    assert_ledger_clean(ctx)


def test_reserving_more_than_available_is_refused_and_writes_nothing(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 100)
    with pytest.raises(InsufficientTokens) as refused:
        reserve(ctx, account, 101, "too-big")
    assert refused.value.code == "insufficient_tokens"
    with ctx.db.read() as session:
        kinds = session.scalars(select(LedgerEntry.kind)).all()
    assert kinds == [EntryKind.GRANT]
    assert balance_of(ctx, account).available == 100


def test_same_key_same_request_returns_the_first_hold(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    first = reserve(ctx, account, 300, "k")
    again = reserve(ctx, account, 300, "k")
    assert first == again
    assert balance_of(ctx, account).reserved == 300
    with pytest.raises(IdempotencyConflict):
        reserve(ctx, account, 301, "k")


def test_settle_twice_is_idempotent_and_other_figures_conflict(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    hold_id = reserve(ctx, account, 500, "t")
    for _ in range(2):
        with ctx.db.uow() as uow:
            ledger.settle(
                uow.session,
                account_id=account,
                hold_id=hold_id,
                context=100,
                generation=50,
                now=ctx.clock.now(),
            )
            uow.commit()
    assert balance_of(ctx, account).available == 850
    with ctx.db.uow() as uow, pytest.raises(IdempotencyConflict):
        ledger.settle(
            uow.session,
            account_id=account,
            hold_id=hold_id,
            context=100,
            generation=51,
            now=ctx.clock.now(),
        )
    with ctx.db.uow() as uow, pytest.raises(Conflict):
        ledger.release(uow.session, account_id=account, hold_id=hold_id, now=ctx.clock.now())


def test_settle_cannot_exceed_the_hold(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    hold_id = reserve(ctx, account, 100, "t")
    with ctx.db.uow() as uow, pytest.raises(InvalidInput):
        ledger.settle(
            uow.session,
            account_id=account,
            hold_id=hold_id,
            context=90,
            generation=11,
            now=ctx.clock.now(),
        )
    assert balance_of(ctx, account).reserved == 100


def test_release_returns_everything(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    hold_id = reserve(ctx, account, 400, "t")
    with ctx.db.uow() as uow:
        ledger.release(uow.session, account_id=account, hold_id=hold_id, now=ctx.clock.now())
        uow.commit()
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (1000, 0)
    assert_ledger_clean(ctx)


def test_expired_holds_are_released_by_the_job(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    reserve(ctx, account, 400, "crashed", ttl=30)
    reserve(ctx, account, 100, "alive", ttl=300)
    ctx.clock.advance(seconds=31)
    with ctx.db.uow() as uow:
        assert ledger.expire_holds(uow.session, now=ctx.clock.now()) == 1
        uow.commit()
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (900, 100)
    assert_ledger_clean(ctx)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "12", None, True, 10**13])
def test_bad_amounts_are_refused(ctx: Context, bad: object) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    with ctx.db.uow() as uow, pytest.raises(InvalidInput):
        ledger.reserve(
            uow.session,
            account_id=account,
            tokens=bad,
            key="x",  # type: ignore[arg-type]
            ttl_seconds=60,
            now=ctx.clock.now(),
        )


def test_spending_takes_the_soonest_expiring_grant_first(ctx: Context) -> None:
    account = new_account(ctx)
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        for key, expires in (
            ("never", None),
            ("late", now + dt.timedelta(days=20)),
            ("soon", now + dt.timedelta(days=2)),
        ):
            ledger.grant(
                uow.session,
                account_id=account,
                amount=100,
                source=GrantSource.ADJUSTMENT,
                key=key,
                period="2026-11",
                now=now,
                expires_at=expires,
            )
        uow.commit()
    hold_id = reserve(ctx, account, 150, "t")
    with ctx.db.read() as session:
        remaining = dict(session.execute(select(Grant.key, Grant.remaining)).all())
    assert remaining == {"soon": 0, "late": 50, "never": 100}
    with ctx.db.uow() as uow:  # spend 60 of 150: the 90 unused go back to "late" first
        ledger.settle(
            uow.session, account_id=account, hold_id=hold_id, context=60, generation=0, now=now
        )
        uow.commit()
    with ctx.db.read() as session:
        remaining = dict(session.execute(select(Grant.key, Grant.remaining)).all())
    assert remaining == {"soon": 40, "late": 100, "never": 100}
    assert_ledger_clean(ctx)


def test_unused_tokens_of_a_grant_that_expired_during_the_hold_expire(ctx: Context) -> None:
    account = new_account(ctx)
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        ledger.grant(
            uow.session,
            account_id=account,
            amount=500,
            source=GrantSource.RENEWAL,
            key="nov",
            period="2026-11",
            now=now,
            expires_at=now + dt.timedelta(hours=1),
        )
        uow.commit()
    hold_id = reserve(ctx, account, 300, "t", ttl=7200)
    ctx.clock.advance(hours=1)
    with ctx.db.uow() as uow:
        expired = ledger.expire_grants(
            uow.session, account_id=account, due_by=ctx.clock.now(), now=ctx.clock.now()
        )
        uow.commit()
    assert expired == 200
    with ctx.db.uow() as uow:
        ledger.settle(
            uow.session,
            account_id=account,
            hold_id=hold_id,
            context=100,
            generation=0,
            now=ctx.clock.now(),
        )
        uow.commit()
    balance = balance_of(ctx, account)
    assert (balance.available, balance.reserved) == (0, 0)
    with ctx.db.read() as session:
        settle = session.scalars(
            select(LedgerEntry).where(LedgerEntry.kind == EntryKind.SETTLE)
        ).one()
    assert (settle.consumed, settle.expired, settle.available_delta) == (100, 200, 0)
    assert_ledger_clean(ctx)


def test_debit_removes_available_tokens_only(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    reserve(ctx, account, 600, "t")
    with ctx.db.uow() as uow, pytest.raises(InsufficientTokens):
        ledger.debit(
            uow.session, account_id=account, amount=401, period="2026-11", now=ctx.clock.now()
        )
    with ctx.db.uow() as uow:
        ledger.debit(
            uow.session, account_id=account, amount=400, period="2026-11", now=ctx.clock.now()
        )
        uow.commit()
    assert balance_of(ctx, account).available == 0
    assert_ledger_clean(ctx)


def test_revoke_at_most_takes_part_of_a_grants_unspent_tokens_never_below_zero(
    ctx: Context,
) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    with ctx.db.read() as session:
        grant_id = session.scalars(select(Grant.id).where(Grant.account_id == account)).one()
    reserve(ctx, account, 600, "t")  # a running turn holds 600: only 400 are unspent

    def revoke(at_most: int | None) -> int:
        with ctx.db.uow() as uow:
            removed = ledger.revoke(
                uow.session,
                account_id=account,
                grant_id=grant_id,
                now=ctx.clock.now(),
                at_most=at_most,
            )
            uow.commit()
            return removed

    assert revoke(250) == 250
    assert revoke(0) == 0
    assert revoke(250) == 150  # only what is left
    assert revoke(None) == 0
    assert (balance_of(ctx, account).available, balance_of(ctx, account).reserved) == (0, 600)
    assert_ledger_clean(ctx)


def test_ledger_entries_cannot_be_changed_or_deleted(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    for statement in (
        "UPDATE ledger_entries SET available_delta = 5",
        "DELETE FROM ledger_entries",
    ):
        with ctx.db.uow() as uow, pytest.raises(Exception, match="append-only"):
            uow.session.execute(text(statement))
    assert_ledger_clean(ctx)


def test_verify_reports_a_tampered_balance(ctx: Context) -> None:
    account = new_account(ctx)
    add_tokens(ctx, account, 1000)
    with ctx.db.uow() as uow:
        uow.session.execute(text("UPDATE token_balances SET available = 999999"))
        uow.commit()
    with ctx.db.read() as session:
        (report,) = verify(session, account_id=account)
    assert not report.ok
    assert any("balance row" in p for p in report.problems)


def test_a_grant_cannot_end_before_its_month_and_its_key_keeps_its_last_month(
    ctx: Context,
) -> None:
    account = new_account(ctx)
    now = ctx.clock.now()
    params = {
        "account_id": account,
        "amount": 5000,
        "source": GrantSource.PURCHASE,
        "key": "rolling",
        "period": "2026-11",
        "now": now,
        "expires_at": dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    }
    with ctx.db.uow() as uow, pytest.raises(InvalidInput, match="cannot end before"):
        ledger.grant(uow.session, **params, last_period="2026-10")  # type: ignore[arg-type]
    with ctx.db.uow() as uow:
        ledger.grant(uow.session, **params, last_period="2026-12")  # type: ignore[arg-type]
        uow.commit()
    with ctx.db.uow() as uow, pytest.raises(IdempotencyConflict):
        ledger.grant(uow.session, **params)  # type: ignore[arg-type]  # the same key, no rollover
    assert balance_of(ctx, account).available == 5000
