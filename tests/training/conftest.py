"""An assistant to train, contexts with other training settings, and the operator's CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.cli import app
from chatmeter.context import Context
from tests.conftest import new_account


def derived(ctx: Context, **settings: Any) -> Context:
    """The test's context with some settings changed (same database and clock)."""
    return Context(
        settings=ctx.settings.model_copy(update=settings),
        db=ctx.db,
        clock=ctx.clock,
        gateway=ctx.gateway,
    )


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


class Operator:
    """Runs ``chatmeter`` commands with a fixed environment, on a database with one account."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.runner = CliRunner()

    def invoke(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
        return result

    def run(self, *args: str, code: int = 0) -> str:
        return self.invoke(*args, code=code).output

    def json(self, *args: str) -> Any:
        return json.loads(self.invoke(*args, "--json").stdout)

    def json_failing(self, *args: str) -> Any:
        return json.loads(self.invoke(*args, "--json", code=1).stdout)

    def file(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)


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
