"""An assistant to train, and the operator's CLI on a database with one account."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.context import Context
from tests.support.accounts import new_account
from tests.support.cli import Operator


@pytest.fixture
def assistant_id(ctx: Context) -> int:
    account_id = new_account(ctx)
    with ctx.db.uow() as uow:
        created = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(name="Helper"),
            now=ctx.clock.now(),
        )
        uow.commit()
        return created.id


@pytest.fixture
def operator(db_url: str, tmp_path: Path) -> Operator:
    operator = Operator(
        {
            "CHATMETER_DATABASE_URL": db_url,
            "CHATMETER_ENV": "test",
            "CHATMETER_DATA_DIR": str(tmp_path / "var"),
            "CHATMETER_NOW": "2026-11-15T12:00:00Z",
            "CHATMETER_WORKER": "none",
            "CHATMETER_DEMO": "false",
            "CHATMETER_MODELS": '["local", "openai:gpt-4o-mini"]',
        },
        tmp_path,
    )
    assert operator.json("accounts", "create", "--email", "shop@example.com")["account_id"] == 1
    return operator
