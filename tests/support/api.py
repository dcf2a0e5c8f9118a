"""Accounts calling the REST API, each with its own key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from chatmeter.accounts import service as accounts
from chatmeter.context import Context
from tests.support.accounts import new_account


@dataclass
class Caller:
    """An account calling the REST API with its own key."""

    account_id: int
    client: TestClient

    def new_assistant(self, **fields: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/assistants", json={"name": "Helper"} | fields)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def caller(ctx: Context, app_client: TestClient, email: str) -> Caller:
    """A new account and a client that sends its API key."""
    account_id = new_account(ctx, email=email)
    with ctx.db.uow() as uow:
        key = accounts.issue_api_key(uow.session, account_id=account_id, now=ctx.clock.now())
        uow.commit()
    headers = {"Authorization": f"Bearer {key}"}
    return Caller(account_id, TestClient(app_client.app, headers=headers))
