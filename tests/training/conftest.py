"""An assistant to train, and contexts with other training settings."""

from __future__ import annotations

from typing import Any

import pytest

from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
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
