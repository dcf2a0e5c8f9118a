"""Auto top-up's setting through the REST API, the CLI and the panel: the same rules
(``topups.check``) everywhere; the owner changes it, a member and a read key only see it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatmeter.accounts import keys
from chatmeter.accounts.models import Role, User
from chatmeter.billing import purchases
from chatmeter.billing.models import AutoTopUp
from chatmeter.context import Context
from chatmeter.jobs.registry import JOBS
from tests.billing.test_renewal import ScriptedGateway
from tests.support.accounts import new_account, spend
from tests.support.api import Caller
from tests.support.cli import Operator
from tests.support.panel import Panel, new_panel

URL = "/api/v1/billing/auto-top-up"
GOOD = {"enabled": True, "threshold": 2000, "packages": 3, "monthly_cap": 4}
BAD = [
    {"threshold": -1},
    {"threshold": 1_000_000_001},
    {"threshold": "1000"},
    {"threshold": 10.5},
    {"packages": 0},
    {"packages": 1001},
    {"monthly_cap": 0},
    {"monthly_cap": 32},
    {"enabled": "yes"},
    {"enabled": 1},
    {"colour": "blue"},
]


def saved(ctx: Context, account: int) -> AutoTopUp | None:
    with ctx.db.read() as session:
        return session.get(AutoTopUp, account)


# --- the REST API -----------------------------------------------------------------------


def test_the_api_reads_the_defaults_and_saves_a_setting(ctx: Context, alice: Caller) -> None:
    first = alice.client.get(URL)
    assert first.status_code == 200, first.text
    assert first.json() | {"period": None} == {
        "enabled": False,
        "threshold": 1000,
        "packages": 1,
        "monthly_cap": 3,
        "tokens_per_top_up": 5000,
        "period": None,
        "used_this_month": 0,
        "waiting": False,
        "disabled_reason": None,
        "disabled_at": None,
    }
    put = alice.client.put(URL, json=GOOD)
    assert put.status_code == 200, put.text
    assert {k: put.json()[k] for k in GOOD} == GOOD
    assert put.json()["tokens_per_top_up"] == 15000
    partial = alice.client.put(URL, json={"enabled": False})  # the others keep their values
    assert {k: partial.json()[k] for k in GOOD} == GOOD | {"enabled": False}
    assert alice.client.get(URL).json() == partial.json()


@pytest.mark.parametrize("body", BAD)
def test_the_api_refuses_bad_settings(ctx: Context, alice: Caller, body: dict[str, Any]) -> None:
    alice.client.put(URL, json=GOOD)
    response = alice.client.put(URL, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    row = saved(ctx, alice.account_id)
    assert row is not None
    assert (row.enabled, row.threshold, row.packages, row.monthly_cap) == tuple(GOOD.values())


def test_a_read_key_sees_it_but_cannot_change_it(
    ctx: Context, alice: Caller, app_client: TestClient
) -> None:
    with ctx.db.uow() as uow:
        _, secret = keys.issue(
            uow.session,
            account_id=alice.account_id,
            name="dashboard",
            scope="read",
            now=ctx.clock.now(),
        )
        uow.commit()
    reader = TestClient(app_client.app, headers={"Authorization": f"Bearer {secret}"})
    assert reader.get(URL).status_code == 200
    refused = reader.put(URL, json=GOOD)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert saved(ctx, alice.account_id) is None


def test_one_account_never_changes_anothers(ctx: Context, alice: Caller, bob: Caller) -> None:
    alice.client.put(URL, json=GOOD)
    assert bob.client.get(URL).json()["enabled"] is False
    assert saved(ctx, bob.account_id) is None


def test_the_api_shows_what_it_did_this_month(ctx: Context, alice: Caller) -> None:
    purchases.purchase(ctx, account_id=alice.account_id, packages=1)
    alice.client.put(URL, json={"enabled": True, "threshold": 1000})
    spend(ctx, alice.account_id, 4500, "crossing")
    JOBS["auto-top-up"].run(ctx)
    seen = alice.client.get(URL).json()
    assert (seen["used_this_month"], seen["period"], seen["waiting"]) == (1, "2026-11", False)


def test_a_decline_shows_why_it_is_off(ctx: Context, alice: Caller) -> None:
    import dataclasses

    from chatmeter.billing.gateways import ChargeStatus

    declining = dataclasses.replace(
        ctx, gateway=ScriptedGateway(ChargeStatus.SUCCEEDED, ChargeStatus.FAILED)
    )
    purchases.purchase(declining, account_id=alice.account_id, packages=1)
    alice.client.put(URL, json={"enabled": True})
    spend(ctx, alice.account_id, 4500, "crossing")
    JOBS["auto-top-up"].run(declining)
    seen = alice.client.get(URL).json()
    assert (seen["enabled"], seen["disabled_reason"]) == (False, "card declined")
    assert seen["disabled_at"].startswith("2026-11-15")


# --- the CLI ----------------------------------------------------------------------------


@pytest.fixture
def operator(ctx: Context, db_url: str, tmp_path: Path) -> Operator:
    env = {
        "CHATMETER_DATABASE_URL": db_url,
        "CHATMETER_ENV": "test",
        "CHATMETER_DATA_DIR": str(tmp_path / "var"),
        "CHATMETER_NOW": "2026-11-15T12:00:00Z",
    }
    return Operator(env, tmp_path)


def test_the_cli_shows_and_changes_it(ctx: Context, operator: Operator) -> None:
    account = str(new_account(ctx))
    shown = operator.json("billing", "auto-top-up", "--account", account)
    assert (shown["enabled"], shown["threshold"]) == (False, 1000)
    changed = operator.json(
        "billing", "auto-top-up", "--account", account,
        "--on", "--below", "2500", "--packages", "2", "--cap", "5",
    )  # fmt: skip
    assert {k: changed[k] for k in GOOD} == {
        "enabled": True,
        "threshold": 2500,
        "packages": 2,
        "monthly_cap": 5,
    }
    text = operator.run("billing", "auto-top-up", "--account", account, "--off")
    assert "auto top-up off" in text and "2,500 tokens" in text and "0 of 5" in text
    row = saved(ctx, int(account))
    assert row is not None and row.enabled is False and row.threshold == 2500


@pytest.mark.parametrize(
    "option", [("--below", "-5"), ("--packages", "0"), ("--cap", "32"), ("--packages", "1001")]
)
def test_the_cli_refuses_bad_settings(
    ctx: Context, operator: Operator, option: tuple[str, str]
) -> None:
    account = str(new_account(ctx))
    result = operator.invoke("billing", "auto-top-up", "--account", account, *option, code=1)
    assert "error:" in result.output + result.stderr
    assert saved(ctx, int(account)) is None


# --- the panel --------------------------------------------------------------------------


@pytest.fixture
def panel(ctx: Context) -> Iterator[Panel]:
    with new_panel(ctx).client as client:
        yield Panel(client)


def form(**fields: str) -> dict[str, str]:
    return {"enabled": "on", "threshold": "1,500", "packages": "2", "monthly_cap": "3"} | fields


def account_of(ctx: Context, email: str = "owner@example.com") -> int:
    with ctx.db.read() as session:
        found = session.scalar(select(User.account_id).where(User.email == email))
    assert found is not None
    return found


def test_the_owner_turns_it_on_in_the_panel(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    page = panel.client.get("/panel/billing").text
    assert 'data-testid="auto-top-up"' in page and "never changes the packages" in page
    response = panel.post("/panel/billing/auto-top-up", form(), page="/panel/billing")
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/panel/billing?done=auto-top-up#auto-top-up"
    row = saved(ctx, account_of(ctx))
    assert row is not None
    assert (row.enabled, row.threshold, row.packages, row.monthly_cap) == (True, 1500, 2, 3)
    page = panel.client.get("/panel/billing?done=auto-top-up").text
    assert "Auto top-up is saved." in page and 'value="1500"' in page
    dashboard = panel.client.get("/panel/dashboard").text
    assert "2 packages when below 1,500 tokens · 0 of 3 this month" in dashboard

    off = panel.post("/panel/billing/auto-top-up", form(enabled=""), page="/panel/billing")
    assert off.status_code == 303
    row = saved(ctx, account_of(ctx))
    assert row is not None and row.enabled is False
    assert 'data-testid="auto-top-up-line"' not in panel.client.get("/panel/dashboard").text


@pytest.mark.parametrize(
    "fields",
    [
        {"threshold": "-1"},
        {"threshold": "lots"},
        {"packages": "0"},
        {"packages": "2.5"},
        {"monthly_cap": "32"},
        {"monthly_cap": ""},
    ],
)
def test_bad_panel_settings_give_a_message_and_change_nothing(
    ctx: Context, panel: Panel, fields: dict[str, str]
) -> None:
    panel.sign_up()
    response = panel.post("/panel/billing/auto-top-up", form(**fields), page="/panel/billing")
    assert response.status_code == 422
    assert 'class="alert alert-error"' in response.text
    typed = next(iter(fields.values()))
    assert f'value="{typed}"' in response.text  # the form comes back as typed
    assert saved(ctx, account_of(ctx)) is None


def test_a_member_reads_it_but_cannot_change_it(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    assert (
        panel.post("/panel/billing/auto-top-up", form(), page="/panel/billing").status_code == 303
    )
    with ctx.db.uow() as uow:
        user = uow.session.scalar(select(User))
        assert user is not None
        user.role = Role.MEMBER
        uow.commit()
    page = panel.client.get("/panel/billing").text
    assert 'action="/panel/billing/auto-top-up"' not in page
    assert "Only the account's owner can change auto top-up." in page
    token = panel.csrf("/panel/billing")
    refused = panel.client.post(
        "/panel/billing/auto-top-up",
        data={"csrf_token": token} | form(threshold="9999"),
        follow_redirects=False,
    )
    assert refused.status_code == 403
    row = saved(ctx, account_of(ctx))
    assert row is not None and row.threshold == 1500


def test_a_forged_form_changes_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    forged = new_panel(ctx)
    forged.client.cookies.update(panel.client.cookies)
    response = forged.client.post(
        "/panel/billing/auto-top-up", data=form() | {"csrf_token": "x"}, follow_redirects=False
    )
    assert response.status_code in (403, 422)
    assert saved(ctx, account_of(ctx)) is None
