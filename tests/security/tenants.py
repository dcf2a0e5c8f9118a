"""Two customers side by side, each with one of everything an account can own.

``open_tenant`` builds an account the way its people would: the owner signs up,
the API key creates an assistant, uploads a file, reserves tokens and buys a
package; a visitor chats (with the bundled model, 16 tokens); the owner invites
a member, who accepts, and another person, who has not yet. Every text the
account owns carries its ``canary``, so a page or an answer that shows another
account's data is caught by a plain substring search.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Table, select
from sqlalchemy.sql import Select

from chatmeter import models
from chatmeter.accounts import opening, team, verification
from chatmeter.accounts import service as accounts
from chatmeter.context import Context
from chatmeter.notifications.models import OutboxMessage
from tests.security.routes import ID_KINDS
from tests.support.accounts import add_tokens

PASSWORD = "a long enough password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# An id no row has in this small world, yet one every id check accepts as an id.
MISSING_ID = 2_000_000_001  # no row has it; within every id column, the 32-bit ones too


@dataclass
class Tenant:
    """A customer: its account, its people's browsers and its API key."""

    canary: str
    account_id: int
    api_key: str
    api: TestClient
    panel: TestClient
    public_key: str
    conversation: str  # the public id a visitor's widget keeps
    question: str
    emails: tuple[str, ...]
    keys: dict[str, str] = field(default_factory=dict)  # idempotency keys it used
    _csrf: str = ""

    @property
    def canaries(self) -> tuple[str, ...]:
        """Strings found only in this account's data."""
        return (
            self.canary,
            self.api_key,
            self.public_key,
            self.conversation,
            *self.emails,
            *self.keys.values(),
        )

    def csrf(self) -> str:
        """The panel's CSRF token for this browser, as its pages carry it."""
        if not self._csrf:
            match = CSRF.search(self.panel.get("/panel/dashboard").text)
            assert match, "no CSRF token on the dashboard"
            self._csrf = match[1]
        return self._csrf

    def ids(self, ctx: Context, kind: str) -> list[int]:
        with ctx.db.read() as session:
            return ID_KINDS[kind].ids(session, self.account_id)


def open_tenant(ctx: Context, app: FastAPI, canary: str) -> Tenant:
    slug = canary.lower()
    owner_email, member_email = f"owner@{slug}.example", f"member@{slug}.example"
    invitee_email = f"invitee@{slug}.example"
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        owner = opening.sign_up(
            uow.session,
            settings=ctx.settings,
            email=owner_email,
            password=PASSWORD,
            name=f"{canary} Shop",
            now=now,
        )
        account_id = owner.account_id
        # A verified owner, as after opening the emailed link: it may invite people.
        verification.mark_verified(
            uow.session, settings=ctx.settings, account_id=account_id, now=now
        )
        api_key = accounts.issue_api_key(uow.session, account_id=account_id, now=now)
        uow.commit()
    add_tokens(ctx, account_id, 100_000, key=f"tenant:{slug}")
    api = TestClient(app, headers={"Authorization": f"Bearer {api_key}"})

    bot = _created(
        api.post(
            "/api/v1/assistants",
            json={
                "name": f"{canary} assistant",
                "instructions": f"Answer as {canary} would.",
                "welcome_message": f"Welcome to {canary}.",
                "max_tokens": 16,
                "temperature": 0,
            },
        )
    )
    _created(
        api.post(
            f"/api/v1/assistants/{bot['id']}/files",
            files={"files": (f"{slug}-handbook.txt", f"The {canary} handbook.\n".encode())},
        )
    )
    _created(
        api.post(
            f"/api/v1/assistants/{bot['id']}/corrections",
            json={"question": f"Who runs {canary}?", "answer": f"{canary} runs {canary}."},
        )
    )
    hook = _created(
        api.post(
            "/api/v1/webhooks",
            json={"url": f"https://hooks.{slug}.example/in", "description": f"{canary} hooks"},
        )
    )
    assert api.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 202
    question = f"Does {canary} open on Sundays?"
    chat = TestClient(app).post(
        f"/api/v1/public/{bot['public_key']}/chat", json={"message": question}
    )
    assert chat.status_code == 200, chat.text
    keys = {kind: f"{slug}-{kind}-key" for kind in ("hold", "purchase", "window")}
    _created(api.post("/api/v1/holds", json={"tokens": 100, "key": keys["hold"]}))
    bought = api.post(
        "/api/v1/purchases", json={"packages": 1}, headers={"Idempotency-Key": keys["purchase"]}
    )
    _created(bought)
    _join_team(ctx, account_id, owner_email, member_email)
    with ctx.db.uow() as uow:
        team.invite(
            uow.session,
            account_id=account_id,
            invited_by=owner_email,
            email=invitee_email,
            role="member",
            now=now,
        )
        uow.commit()

    tenant = Tenant(
        canary=canary,
        account_id=account_id,
        api_key=api_key,
        api=api,
        panel=signed_in(app, owner_email),
        public_key=bot["public_key"],
        conversation=chat.json()["conversation_id"],
        question=question,
        emails=(owner_email, member_email, invitee_email),
        keys=keys,
    )
    window = tenant.panel.post(  # "Get more tokens" in the panel
        "/panel/tokens",
        json={"packages": 1, "key": keys["window"]},
        headers={"X-CSRF-Token": tenant.csrf()},
    )
    assert window.status_code == 200, window.text
    return tenant


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body = response.json()
    return body[0] if isinstance(body, list) else body  # type: ignore[no-any-return]


def _join_team(ctx: Context, account_id: int, owner_email: str, email: str) -> None:
    """Invite ``email`` as a member and accept with the link the email carries."""
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        row = team.invite(
            uow.session,
            account_id=account_id,
            invited_by=owner_email,
            email=email,
            role="member",
            now=now,
        )
        uow.commit()
        dedupe_key = f"team_invitation:{row.id}"
    with ctx.db.read() as session:
        sent = session.scalars(
            select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
        ).one()
        token = json.loads(sent.context)["token"]
    with ctx.db.uow() as uow:
        team.accept(uow.session, token=token, password=PASSWORD, now=now)
        uow.commit()


def signed_in(app: FastAPI, email: str) -> TestClient:
    """A browser signed in to the panel through its sign-in form."""
    browser = TestClient(app, base_url="http://127.0.0.1")
    page = browser.get("/panel/sign-in")
    match = CSRF.search(page.text)
    assert match, "no CSRF token on the sign-in page"
    response = browser.post(
        "/panel/sign-in",
        data={"csrf_token": match[1], "email": email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return browser


# --- what an account owns, row by row ---------------------------------------------------


def _owned_rows(table: Table, account_id: int) -> Select[Any] | None:
    """The rows of ``table`` that belong to the account: by its ``account_id`` column, or
    through a foreign key to a table that has one (messages, passages, allocations)."""
    if table.name == "accounts":
        return select(table).where(table.c.id == account_id)
    if "account_id" in table.c:
        return select(table).where(table.c.account_id == account_id)
    for key in table.foreign_keys:
        parent = key.column.table
        if "account_id" in parent.c:
            owners = select(key.column).where(parent.c.account_id == account_id)
            return select(table).where(key.parent.in_(owners))
    return None  # not an account's: job leases


def snapshot(ctx: Context, account_id: int) -> Mapping[str, list[tuple[Any, ...]]]:
    """Every row the account owns, table by table, in a comparable form."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with ctx.db.read() as session:
        for table in models.Base.metadata.sorted_tables:
            query = _owned_rows(table, account_id)
            if query is not None:
                rows[table.name] = sorted((tuple(row) for row in session.execute(query)), key=repr)
    return rows


def changes(before: Mapping[str, list[Any]], after: Mapping[str, list[Any]]) -> list[str]:
    """The tables whose rows differ, with what was added and what went."""
    found = []
    for name in before:
        gone = [row for row in before[name] if row not in after[name]]
        added = [row for row in after[name] if row not in before[name]]
        if gone or added:
            found.append(f"{name}: went {gone[:2]}, came {added[:2]}")
    return found
