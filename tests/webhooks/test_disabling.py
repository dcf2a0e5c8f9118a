"""An endpoint whose every delivery has failed for 3 days is turned off when the next
one dies, once, with one email to the owner; a success, an idle spell or turning it
back on starts the count again; the reason shows in the API and the panel; on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import html
import json
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.formatting import local_time
from chatmeter.notifications.models import OutboxMessage
from chatmeter.notifications.templates import render
from chatmeter.web.app import create_app
from chatmeter.webhooks import delivery, disabling
from chatmeter.webhooks.delivery import MAX_ATTEMPTS, backoff
from chatmeter.webhooks.disabling import DISABLE_AFTER
from chatmeter.webhooks.models import DeliveryStatus, WebhookEndpoint
from tests.support.accounts import new_account
from tests.support.api import caller
from tests.support.receiver import Receiver, receiver
from tests.support.wait import wait_for
from tests.webhooks.support import add_endpoint, deliver, deliveries, happen, on_loopback

DIED = "every delivery failed for 3 days (last error: HTTP 500: nope)"


@pytest.fixture
def hooks(ctx: Context) -> Context:
    return on_loopback(ctx)


def run_to_death(hooks: Context, clock: FixedClock) -> None:
    """Every attempt of what is due now, each failing, until it is dead (about 6 hours)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        deliver(hooks)
        clock.advance(seconds=backoff(attempt).total_seconds())
    assert {d.status for d in deliveries(hooks)} <= {DeliveryStatus.DEAD, DeliveryStatus.DELIVERED}


def endpoint_of(ctx: Context, endpoint_id: int) -> WebhookEndpoint:
    with ctx.db.read() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        return endpoint


def emails(ctx: Context) -> list[OutboxMessage]:
    with ctx.db.read() as session:
        return list(
            session.scalars(select(OutboxMessage).where(OutboxMessage.kind == disabling.EMAIL_KIND))
        )


def test_an_endpoint_failing_for_3_days_is_turned_off_and_the_owner_emailed_once(
    hooks: Context, clock: FixedClock
) -> None:
    started = clock.now()
    with TestClient(create_app(hooks)) as app, receiver(500) as inbox:
        owner = caller(hooks, app, "owner@example.com")
        made = owner.client.post(
            "/api/v1/webhooks", json={"url": inbox.url, "description": "Shop backend"}
        ).json()
        url = f"/api/v1/webhooks/{made['id']}"
        happen(hooks, owner.account_id, "day 0")
        run_to_death(hooks, clock)  # dead after 6 hours: failing, but not for long
        assert endpoint_of(hooks, made["id"]).enabled and emails(hooks) == []
        clock.set(started + DISABLE_AFTER)
        happen(hooks, owner.account_id, "day 3")
        run_to_death(hooks, clock)
        shown = owner.client.get(url).json()
        assert shown["enabled"] is False
        assert shown["disabled_reason"] == DIED
        turned_off = dt.datetime.fromisoformat(shown["disabled_at"])
        assert started + DISABLE_AFTER < turned_off < clock.now()
        assert owner.client.get("/api/v1/webhooks").json()[0]["disabled_reason"] == DIED
        tried = len(inbox.received)
        happen(hooks, owner.account_id, "day 4")  # not queued for an endpoint that is off
        clock.advance(hours=1)
        assert deliver(hooks) == delivery.Report()
        assert len(deliveries(hooks)) == 2 and len(inbox.received) == tried
    [email] = emails(hooks)
    assert email.to_address == "owner@example.com" and email.account_id == owner.account_id
    assert email.dedupe_key == f"webhook_disabled:{made['id']}:{turned_off.isoformat()}"
    rendered = render(email.kind, json.loads(email.context), base_url="https://x.example")
    assert rendered.subject == "Webhook endpoint turned off: it has failed for 3 days"
    for fragment in (
        f"{inbox.url} (Shop backend)",
        f"since {started:%Y-%m-%d %H:%M} UTC",
        "Last error: HTTP 500: nope",
        f"https://x.example/panel/settings/webhooks/{made['id']}",
    ):
        assert fragment in rendered.text, fragment


def test_a_success_within_the_window_keeps_it_on_and_starts_the_count_again(
    hooks: Context, clock: FixedClock
) -> None:
    started = clock.now()
    account = new_account(hooks)
    with receiver(500) as inbox:
        endpoint = add_endpoint(hooks, account, inbox.url)
        happen(hooks, account, "failed")
        run_to_death(hooks, clock)
        clock.set(started + dt.timedelta(days=2))
        inbox.statuses = [200]
        happen(hooks, account, "delivered")
        assert deliver(hooks).delivered == 1
        inbox.statuses = [500]
        clock.advance(hours=1)
        again = clock.now()
        happen(hooks, account, "after")
        run_to_death(hooks, clock)
        clock.set(started + DISABLE_AFTER + dt.timedelta(hours=6))
        happen(hooks, account, "3 days after the first failure")
        run_to_death(hooks, clock)
        assert endpoint_of(hooks, endpoint.id).enabled and emails(hooks) == []
        clock.set(again + DISABLE_AFTER)  # 3 days after the first failure since the success
        happen(hooks, account, "last")
        run_to_death(hooks, clock)
    assert not endpoint_of(hooks, endpoint.id).enabled
    [email] = emails(hooks)
    assert json.loads(email.context)["failing_since"] == again.isoformat()


def test_an_idle_endpoint_that_fails_for_hours_stays_on(hooks: Context, clock: FixedClock) -> None:
    account = new_account(hooks)
    with receiver(500) as inbox:
        endpoint = add_endpoint(hooks, account, inbox.url)
        clock.advance(days=10)  # made long ago, nothing happened since
        happen(hooks, account, "first")
        run_to_death(hooks, clock)
    assert endpoint_of(hooks, endpoint.id).enabled and emails(hooks) == []


def failing_for_3_days(hooks: Context, clock: FixedClock, inbox: Receiver) -> tuple[int, int]:
    """An account and its endpoint whose one delivery died 3 days ago."""
    account = new_account(hooks)
    endpoint = add_endpoint(hooks, account, inbox.url)
    started = clock.now()
    happen(hooks, account, "long ago")
    run_to_death(hooks, clock)
    clock.set(started + DISABLE_AFTER + dt.timedelta(minutes=1))
    return account, endpoint.id


def test_two_workers_burying_deliveries_at_once_turn_it_off_once(
    hooks: Context, clock: FixedClock
) -> None:
    with receiver(500) as inbox:
        account, endpoint_id = failing_for_3_days(hooks, clock, inbox)
        happen(hooks, account, "one")
        happen(hooks, account, "two")
        for attempt in range(1, MAX_ATTEMPTS):  # both on their last attempt
            assert deliver(hooks).failed == 2
            clock.advance(seconds=backoff(attempt).total_seconds())
        start = threading.Barrier(2)
        reports: list[delivery.Report] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                start.wait()
                reports.append(deliver(hooks, batch=1))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and sorted(r.dead for r in reports) == [1, 1]
    assert not endpoint_of(hooks, endpoint_id).enabled
    assert len(emails(hooks)) == 1


# PostgreSQL only: on SQLite, one writer at a time, the second starts after the first.
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_worker_that_read_it_on_before_another_turned_it_off_sends_no_second_email(
    hooks: Context, clock: FixedClock
) -> None:
    """The conditional UPDATE, shown on PostgreSQL: the second worker read the endpoint
    as on, then waited for the first's row lock, and finds it off."""
    assert hooks.db.is_postgres
    with receiver(500) as inbox:
        _, endpoint_id = failing_for_3_days(hooks, clock, inbox)
    results: list[bool] = []

    def turn_off() -> bool:
        with hooks.db.uow() as uow:
            done = disabling.turn_off_if_failing(
                uow.session, endpoint_id=endpoint_id, last_error="late", now=clock.now()
            )
            uow.commit()
            return done

    with hooks.db.uow() as first:
        assert disabling.turn_off_if_failing(
            first.session, endpoint_id=endpoint_id, last_error="HTTP 500: nope", now=clock.now()
        )
        second = threading.Thread(target=lambda: results.append(turn_off()))
        second.start()
        wait_for(lambda: _waiting_on_a_lock(hooks), "the second worker to wait for the row")
        first.commit()
    second.join()
    assert results == [False]
    assert len(emails(hooks)) == 1
    assert endpoint_of(hooks, endpoint_id).disabled_reason == DIED


def _waiting_on_a_lock(ctx: Context) -> bool:
    with ctx.db.read() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def test_turning_it_back_on_clears_the_reason_and_deliveries_resume(
    hooks: Context, clock: FixedClock
) -> None:
    with TestClient(create_app(hooks)) as app, receiver(500) as inbox:
        owner = caller(hooks, app, "owner@example.com")
        other = caller(hooks, app, "other@example.com")
        endpoint = add_endpoint(hooks, owner.account_id, inbox.url)
        happen(hooks, owner.account_id, "long ago")
        run_to_death(hooks, clock)
        clock.advance(days=3)
        happen(hooks, owner.account_id, "today")
        for attempt in range(1, MAX_ATTEMPTS):
            deliver(hooks)
            clock.advance(seconds=backoff(attempt).total_seconds())
        happen(hooks, owner.account_id, "still pending when it is turned off")
        report = deliver(hooks)
        assert (report.dead, report.failed) == (1, 1)
        url = f"/api/v1/webhooks/{endpoint.id}"
        assert owner.client.get(url).json()["disabled_reason"] == DIED
        for method, body in (("GET", None), ("PATCH", {"enabled": True})):
            refused = other.client.request(method, url, json=body)
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert owner.client.get(url).json()["enabled"] is False
        turned_on = owner.client.patch(url, json={"enabled": True}).json()
        assert turned_on["enabled"] is True
        assert (turned_on["disabled_reason"], turned_on["disabled_at"]) == (None, None)
        assert endpoint_of(hooks, endpoint.id).enabled_at == clock.now()
        # The delivery left pending dies too, but the count starts again when it was
        # turned back on: it stays on, and nobody is emailed twice.
        run_to_death(hooks, clock)
        assert owner.client.get(url).json()["enabled"] is True
        inbox.statuses = [200]
        happen(hooks, owner.account_id, "back")
        assert deliver(hooks).delivered == 1
    assert len(emails(hooks)) == 1
    assert [d.status for d in deliveries(hooks)][-1] == DeliveryStatus.DELIVERED


def _panel_page(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return html.unescape(response.text)


def test_the_panel_shows_why_it_was_turned_off_and_turns_it_back_on(
    hooks: Context, clock: FixedClock
) -> None:
    from tests.panel.test_webhooks_panel import PAGE, add
    from tests.support.panel import Panel

    panel = Panel(TestClient(create_app(hooks), base_url="http://127.0.0.1"))
    with panel.client, receiver(500) as inbox:
        panel.sign_up()
        endpoint_id, _ = add(panel, inbox.url, description="Shop backend")
        account = endpoint_of(hooks, endpoint_id).account_id
        happen(hooks, account, "long ago")
        run_to_death(hooks, clock)
        clock.advance(days=3)
        happen(hooks, account, "today")
        run_to_death(hooks, clock)
        turned_off = endpoint_of(hooks, endpoint_id).disabled_at
        assert turned_off is not None
        page = f"{PAGE}/{endpoint_id}"
        shown = _panel_page(panel.client, page)
        assert f"Turned off on {local_time(turned_off, 'UTC')}: {DIED}." in shown
        assert "after failing for days" in _panel_page(panel.client, PAGE)
        form: dict[str, Any] = {
            "url": inbox.url,
            "description": "Shop backend",
            "all_events": "on",
            "enabled": "on",
        }
        assert panel.post(page, form, page=page).status_code == 303
        shown = _panel_page(panel.client, page)
    assert "Turned off on" not in shown and 'name="enabled" checked' in shown
    assert endpoint_of(hooks, endpoint_id).disabled_reason is None
