"""API keys: several named keys per account, each with a scope, shown once, revocable.

A key reads ``cm_<prefix>_<secret>``: the random prefix finds its row, and only
the SHA-256 of the 256-bit secret is kept, so the key is shown once, when it
is made. A revoked key is kept (with ``revoked_at``) and never works again; an
id or prefix is never given to another key.

Scopes (``Scope``): ``read`` keys may make GET requests only (balance, ledger,
assistants, conversations, usage, the keys themselves); ``all`` keys may do
everything the REST API offers. A key may make keys of its own scope or a
narrower one, never a wider one. Keys made before scopes existed are ``all``.

``last_used_at`` is written at most once a minute per key, by a conditional
update, so that a busy integration does not turn every request into a write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account, ApiKey, Scope
from chatmeter.db import Database
from chatmeter.errors import Conflict, InsufficientScope, InvalidInput, NotFound, Unauthorized

PREFIX = "cm_"
MAX_NAME_LENGTH = 100
MAX_ACTIVE_KEYS = 20
LAST_USED_EVERY = dt.timedelta(minutes=1)
# Scopes from narrowest to widest: a key may make keys up to its own place here.
ORDER = (Scope.READ, Scope.ALL)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPE_MESSAGE = "choose a scope: read (GET requests only) or all"


@dataclass(frozen=True)
class Caller:
    """Who calls the REST API: the account, the key and what the key may do."""

    account_id: int
    key_id: int
    scope: Scope


def parse_scope(value: object) -> Scope:
    if not isinstance(value, str) or value.strip().lower() not in {s.value for s in Scope}:
        raise InvalidInput(SCOPE_MESSAGE, field="scope")
    return Scope(value.strip().lower())


def parse_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("name the key, e.g. after the integration that uses it", field="name")
    name = value.strip()
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidInput(
            f"the name must be 1 to {MAX_NAME_LENGTH} printable characters", field="name"
        )
    return name


def check_grantable(caller: Scope, requested: Scope) -> None:
    """``InsufficientScope`` when a key of scope ``caller`` asks for a wider key."""
    if ORDER.index(requested) > ORDER.index(caller):
        raise InsufficientScope(f"a {caller} key cannot make a key with scope {requested}")


def check_method(scope: Scope, method: str) -> None:
    """``InsufficientScope`` when a key of ``scope`` may not make a request with ``method``."""
    if scope is Scope.READ and method.upper() not in READ_METHODS:
        raise InsufficientScope("this API key is read-only (scope read): it may only read")


# --- the verbs -----------------------------------------------------------------------------


def issue(
    session: Session, *, account_id: int, name: object, scope: object, now: dt.datetime
) -> tuple[ApiKey, str]:
    """A new key's row and the key itself, which is not kept: show it this once."""
    chosen, label = parse_scope(scope), parse_name(name)
    if session.get(Account, account_id) is None:
        raise NotFound("no such account", account_id=account_id)
    active = session.scalar(
        select(func.count(ApiKey.id)).where(
            ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None)
        )
    )
    if (active or 0) >= MAX_ACTIVE_KEYS:
        raise Conflict(
            f"an account has at most {MAX_ACTIVE_KEYS} keys in use; revoke one you no longer need"
        )
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = ApiKey(
        account_id=account_id,
        prefix=prefix,
        secret_hash=_hash(secret),
        name=label,
        scope=chosen,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key, f"{PREFIX}{prefix}_{secret}"


def list_keys(session: Session, *, account_id: int) -> list[ApiKey]:
    """The account's keys, those in use first, newest first."""
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.account_id == account_id)
            .order_by(ApiKey.revoked_at.is_not(None), ApiKey.id.desc())
        )
    )


def revoke(session: Session, *, account_id: int, key_id: int, now: dt.datetime) -> ApiKey:
    """Stop a key working at once; revoking a revoked key changes nothing."""
    key = session.get(ApiKey, key_id)
    if key is None or key.account_id != account_id:
        raise NotFound("no such API key", key_id=key_id)
    if key.revoked_at is None:
        key.revoked_at = now
    return key


def authenticate(session: Session, *, token: str) -> ApiKey:
    """The key ``token`` is, if it works; ``Unauthorized`` otherwise."""
    if not token.isascii() or not token.startswith(PREFIX) or "_" not in token[len(PREFIX) :]:
        raise Unauthorized("invalid API key")
    prefix, secret = token[len(PREFIX) :].split("_", 1)
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if (
        key is None
        or key.revoked_at is not None
        or not hmac.compare_digest(key.secret_hash, _hash(secret))
    ):
        raise Unauthorized("invalid API key")
    return key


def note_use(db: Database, *, key: ApiKey, now: dt.datetime) -> bool:
    """Record that ``key`` was used, unless that was done less than a minute ago.

    Free when the key was seen recently (no query at all); otherwise one update,
    conditional so that many processes at once still write it about once.
    """
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return False
    stale = or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - LAST_USED_EVERY)
    statement = (
        update(ApiKey)
        .where(ApiKey.id == key.id, stale)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    with db.uow() as uow:
        result = cast("CursorResult[Any]", uow.session.execute(statement))
        uow.commit()
    return bool(result.rowcount)


def key_dict(key: ApiKey) -> dict[str, Any]:
    """A key as the API, the CLI and the panel show it: never its secret."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": f"{PREFIX}{key.prefix}_",
        "scope": key.scope,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "active": key.revoked_at is None,
    }


def _hash(secret: str) -> str:
    # The secret is 256 random bits, so a plain hash cannot be brute-forced.
    return hashlib.sha256(secret.encode()).hexdigest()
