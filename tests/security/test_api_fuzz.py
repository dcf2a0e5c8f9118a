"""The REST API under property-based fuzzing from its OpenAPI schema, on both databases.

An account with tokens and a real API key; schemathesis sends a fixed, seeded set
of requests to every operation and follows the schema's links (``fuzzing.fuzz``).
No 500, no undocumented 5xx, every 4xx a JSON error, every declared response as
declared, and afterwards ``chatmeter ledger verify`` finds nothing wrong.

The public chat is fuzzed for its validation only: no link hands the fuzzer a
real public key, so every generated key is unknown and no model is ever run
(checked below), which keeps the run to seconds.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from chatmeter.accounts import service as accounts
from chatmeter.chat.models import Conversation
from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.security.fuzzing import fuzz
from tests.support.accounts import add_tokens, new_account
from tests.support.ledger import assert_ledger_clean

# Per operation and generation mode; and requests per stateful scenario.
EXAMPLES = 15
STEPS = 12


@pytest.mark.slow
def test_the_api_survives_fuzzing_from_its_own_schema(ctx: Context) -> None:
    account_id = new_account(ctx, email="fuzz@example.com")
    add_tokens(ctx, account_id, 1_000_000)
    with ctx.db.uow() as uow:
        key = accounts.issue_api_key(uow.session, account_id=account_id, now=ctx.clock.now())
        uow.commit()
    app = create_app(ctx)
    documented = {
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }

    started = time.monotonic()
    report = fuzz(app, key, examples=EXAMPLES, steps=STEPS)
    seconds = time.monotonic() - started

    assert not report.failures, f"{len(report.failures)} failure(s):\n" + "\n".join(report.failures)
    # The whole budget ran: every operation, every phase, about 1,400 requests.
    assert report.operations == documented
    assert {"coverage", "fuzzing", "stateful"} <= set(report.phases)
    assert report.requests > 1_000
    print(f"fuzzing: {report.requests} requests in {seconds:.1f} s")
    assert_ledger_clean(ctx)
    with ctx.db.read() as session:  # the model never ran
        assert session.scalar(select(func.count()).select_from(Conversation)) == 0
