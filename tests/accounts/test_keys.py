"""The rules of API keys, as functions: scopes, their order, names, and the once-a-minute
record of use (one write, then none until a minute has passed)."""

from __future__ import annotations

import pytest

from chatmeter.accounts import keys
from chatmeter.accounts.models import ApiKey, Scope
from chatmeter.context import Context
from chatmeter.errors import InsufficientScope, InvalidInput, NotFound, Unauthorized
from tests.support.accounts import new_account


@pytest.mark.parametrize(("value", "scope"), [("read", Scope.READ), (" ALL ", Scope.ALL)])
def test_a_scope_is_read_or_all(value: str, scope: Scope) -> None:
    assert keys.parse_scope(value) is scope


@pytest.mark.parametrize("value", ["", "write", "admin", None, 1, "rëad"])
def test_any_other_scope_is_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="choose a scope"):
        keys.parse_scope(value)


def test_a_key_never_makes_a_wider_key() -> None:
    keys.check_grantable(Scope.ALL, Scope.ALL)
    keys.check_grantable(Scope.ALL, Scope.READ)
    keys.check_grantable(Scope.READ, Scope.READ)
    with pytest.raises(InsufficientScope):
        keys.check_grantable(Scope.READ, Scope.ALL)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_a_read_key_reads(method: str) -> None:
    keys.check_method(Scope.READ, method)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_read_key_writes_nothing_but_an_all_key_does(method: str) -> None:
    with pytest.raises(InsufficientScope):
        keys.check_method(Scope.READ, method)
    keys.check_method(Scope.ALL, method)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "tab\there", None])
def test_a_name_is_1_to_100_printable_characters(name: object) -> None:
    with pytest.raises(InvalidInput):
        keys.parse_name(name)


def test_use_is_recorded_at_most_once_a_minute(ctx: Context) -> None:
    account_id = new_account(ctx)
    with ctx.db.uow() as uow:
        _, token = keys.issue(
            uow.session, account_id=account_id, name="ci", scope="read", now=ctx.clock.now()
        )
        uow.commit()

    def seen() -> ApiKey:
        with ctx.db.read() as session:
            return keys.authenticate(session, token=token)

    assert keys.note_use(ctx.db, key=seen(), now=ctx.clock.now()) is True
    assert seen().last_used_at == ctx.clock.now()
    assert keys.note_use(ctx.db, key=seen(), now=ctx.clock.advance(seconds=30)) is False
    # Another process holding an older copy of the row: the update's condition stops it.
    stale = seen()
    stale.last_used_at = None
    assert keys.note_use(ctx.db, key=stale, now=ctx.clock.now()) is False
    assert keys.note_use(ctx.db, key=seen(), now=ctx.clock.advance(seconds=30)) is True


def test_a_forged_or_strange_token_is_unauthorized(ctx: Context) -> None:
    new_account(ctx)
    with ctx.db.read() as session:
        for token in ["", "cm_", "cm_abc", "cm_abc_def", "sk_abc_def", "cm_é_é", "cm_" + "a" * 500]:
            with pytest.raises(Unauthorized):
                keys.authenticate(session, token=token)


def test_revoking_an_unknown_key_is_not_found(ctx: Context) -> None:
    account_id = new_account(ctx)
    with ctx.db.uow() as uow, pytest.raises(NotFound):
        keys.revoke(uow.session, account_id=account_id, key_id=999, now=ctx.clock.now())
