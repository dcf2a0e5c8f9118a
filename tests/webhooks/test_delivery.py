"""Delivery to a receiver on loopback, on SQLite and PostgreSQL: signed, retried with
backoff, at least once and de-duplicable by the event's id, never inward unless the
operator allows it, and exactly once per event with two workers at once."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.webhooks import delivery, endpoints
from chatmeter.webhooks.delivery import MAX_ATTEMPTS, backoff
from chatmeter.webhooks.events import EventType
from chatmeter.webhooks.models import DeliveryStatus
from tests.support.accounts import new_account
from tests.support.net import free_port
from tests.support.receiver import receiver
from tests.webhooks.support import (
    add_endpoint,
    deliver,
    deliveries,
    events_of,
    happen,
    on_loopback,
)
from tests.webhooks.test_signing import readme_verify


@pytest.fixture
def hooks(ctx: Context) -> Context:
    return on_loopback(ctx)


def test_an_event_is_posted_once_signed_with_its_id(hooks: Context) -> None:
    account = new_account(hooks)
    with receiver() as inbox:
        endpoint = add_endpoint(hooks, account, inbox.url)
        happen(hooks, account, "first")
        # At the real time, so that the README's check (against time.time()) applies.
        real_now = dt.datetime.now(dt.UTC)
        report = delivery.deliver_due(hooks.db, settings=hooks.settings, now=real_now)
        assert (report.delivered, report.failed, report.dead) == (1, 0, 0)
        assert deliver(hooks).delivered == 0  # nothing is due any more
    [got] = inbox.received
    [event] = events_of(hooks)
    assert json.loads(got.body) == event
    assert event["type"] == "balance.low" and event["account_id"] == account
    assert event["data"] == {"key": "first"} and event["id"].startswith("evt_")
    assert got.path == "/hooks"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["chatmeter-event-id"] == event["id"]
    assert got.headers["chatmeter-event-type"] == "balance.low"
    assert got.headers["chatmeter-delivery-attempt"] == "1"
    assert readme_verify()(endpoint.secret, got.headers["chatmeter-signature"], got.body)
    assert not readme_verify()("whsec_wrong", got.headers["chatmeter-signature"], got.body)
    [row] = deliveries(hooks)
    assert (row.status, row.attempts, row.last_status) == (DeliveryStatus.DELIVERED, 1, 200)


def test_failures_are_retried_with_backoff_under_the_same_event_id(
    hooks: Context, clock: FixedClock
) -> None:
    account = new_account(hooks)
    with receiver(500, 503, 200) as inbox:
        add_endpoint(hooks, account, inbox.url)
        happen(hooks, account, "retried")
        assert deliver(hooks).failed == 1
        [row] = deliveries(hooks)
        assert row.next_attempt_at == clock.now() + dt.timedelta(seconds=30)
        assert row.last_status == 500 and "HTTP 500: nope" in (row.last_error or "")
        clock.advance(seconds=29)
        assert deliver(hooks) == delivery.Report()  # not due yet
        clock.advance(seconds=1)
        assert deliver(hooks).failed == 1
        [row] = deliveries(hooks)
        assert row.next_attempt_at == clock.now() + dt.timedelta(minutes=1)  # doubled
        clock.advance(minutes=1)
        assert deliver(hooks).delivered == 1
    assert [r.headers["chatmeter-delivery-attempt"] for r in inbox.received] == ["1", "2", "3"]
    assert len(set(inbox.event_ids())) == 1  # the receiver can drop repeats by the id
    assert len({r.body for r in inbox.received}) == 1  # the same bytes every time
    [row] = deliveries(hooks)
    assert (row.status, row.attempts, row.last_error) == (DeliveryStatus.DELIVERED, 3, None)


def test_backoff_doubles_from_30_seconds_to_at_most_an_hour() -> None:
    waits = [backoff(n).total_seconds() for n in range(1, MAX_ATTEMPTS + 1)]
    assert waits[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert set(waits[7:]) == {3600}


def test_after_the_last_attempt_a_delivery_is_dead_until_sent_again(
    hooks: Context, clock: FixedClock
) -> None:
    account = new_account(hooks)
    with receiver(500) as inbox:
        endpoint = add_endpoint(hooks, account, inbox.url)
        happen(hooks, account, "doomed")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            report = deliver(hooks)
            assert report.dead == (1 if attempt == MAX_ATTEMPTS else 0)
            clock.advance(seconds=backoff(attempt).total_seconds())
        assert deliver(hooks) == delivery.Report()
        assert len(inbox.received) == MAX_ATTEMPTS
        [row] = deliveries(hooks)
        assert row.status == DeliveryStatus.DEAD
        inbox.statuses = [200]
        with hooks.db.uow() as uow:
            endpoints.resend(
                uow.session,
                account_id=account,
                endpoint_id=endpoint.id,
                delivery_id=row.id,
                now=clock.now(),
            )
            uow.commit()
        assert deliver(hooks).delivered == 1
    [row] = deliveries(hooks)
    assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 1)


def test_an_unreachable_endpoint_costs_one_attempt_a_round_and_holds_up_no_one(
    hooks: Context, clock: FixedClock
) -> None:
    account = new_account(hooks)
    with receiver() as inbox:
        dead_end = add_endpoint(hooks, account, f"http://127.0.0.1:{free_port()}/gone")
        add_endpoint(hooks, account, inbox.url)
        for n in range(3):
            happen(hooks, account, f"e{n}")
        report = deliver(hooks)
    assert (report.delivered, report.failed) == (3, 1)
    assert len(inbox.received) == 3
    waiting = [d for d in deliveries(hooks) if d.endpoint_id == dead_end.id]
    assert sorted(d.attempts for d in waiting) == [0, 0, 1]  # two handed back untried
    assert {d.next_attempt_at for d in waiting} == {clock.now() + dt.timedelta(seconds=30)}
    assert "Connection refused" in (next(d for d in waiting if d.attempts).last_error or "")


def test_a_redirect_is_a_failure_and_is_not_followed(hooks: Context) -> None:
    account = new_account(hooks)
    with receiver(302) as inbox:
        add_endpoint(hooks, account, inbox.url)
        happen(hooks, account, "moved")
        assert deliver(hooks).failed == 1
    assert [r.path for r in inbox.received] == ["/hooks"]
    [row] = deliveries(hooks)
    assert row.last_status == 302


def test_without_the_operators_setting_loopback_is_never_contacted(hooks: Context) -> None:
    """An endpoint saved while the setting was on (or whose name now resolves inward)
    is refused at delivery: the receiver on loopback hears nothing."""
    account = new_account(hooks)
    with receiver() as inbox:
        add_endpoint(hooks, account, inbox.url)
        add_endpoint(hooks, account, inbox.url.replace("127.0.0.1", "localhost"))
        happen(hooks, account, "inward")
        closed = hooks.settings.model_copy(update={"webhook_allow_private_networks": False})
        report = delivery.deliver_due(hooks.db, settings=closed, now=hooks.clock.now())
        assert report.failed == 2
    assert inbox.received == []
    for row in deliveries(hooks):
        assert "private or local address" in (row.last_error or "")


def test_events_go_to_enabled_endpoints_that_listen_and_a_test_only_where_asked(
    hooks: Context,
) -> None:
    account, other_account = new_account(hooks), new_account(hooks, email="o@example.com")
    with receiver() as inbox:
        low_only = add_endpoint(hooks, account, inbox.url + "/low", events=["balance.low"])
        add_endpoint(hooks, account, inbox.url + "/paid", events=["purchase.paid"])
        off = add_endpoint(hooks, account, inbox.url + "/off")
        add_endpoint(hooks, other_account, inbox.url + "/stranger")
        with hooks.db.uow() as uow:
            endpoints.update(
                uow.session,
                account_id=account,
                endpoint_id=off.id,
                enabled=False,
                allow_private=True,
                now=hooks.clock.now(),
            )
            test = endpoints.send_test(
                uow.session, account_id=account, endpoint_id=low_only.id, now=hooks.clock.now()
            )
            uow.commit()
        happen(hooks, account, "low")
        happen(hooks, account, "surge", EventType.USAGE_SURGE)
        deliver(hooks)
    got = sorted((r.path, r.headers["chatmeter-event-type"]) for r in inbox.received)
    assert got == [("/hooks/low", "balance.low"), ("/hooks/low", "test")]
    assert test.public_id in inbox.event_ids()


def test_the_same_cause_makes_one_event(hooks: Context) -> None:
    account = new_account(hooks)
    with receiver() as inbox:
        add_endpoint(hooks, account, inbox.url)
        for _ in range(3):
            happen(hooks, account, "once")
        deliver(hooks)
    assert len(inbox.received) == 1 and len(events_of(hooks)) == 1


def test_two_workers_at_once_deliver_each_event_exactly_once(hooks: Context) -> None:
    account = new_account(hooks)
    with receiver() as inbox:
        add_endpoint(hooks, account, inbox.url)
        for n in range(30):
            happen(hooks, account, f"n{n}")
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                start.wait()
                while deliver(hooks, batch=4) != delivery.Report():
                    pass
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert sorted(inbox.event_ids()) == sorted(e["id"] for e in events_of(hooks))
    assert len(inbox.received) == 30
    assert {d.status for d in deliveries(hooks)} == {DeliveryStatus.DELIVERED}


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(
    hooks: Context, clock: FixedClock
) -> None:
    account = new_account(hooks)
    with receiver() as inbox:
        endpoint = add_endpoint(hooks, account, inbox.url)
        with hooks.db.uow() as uow:
            rotated = endpoints.rotate_secret(
                uow.session, account_id=account, endpoint_id=endpoint.id, now=clock.now()
            )
            new_secret = rotated.secret
            uow.commit()
        happen(hooks, account, "during")
        deliver(hooks)
        clock.advance(hours=24, seconds=1)
        happen(hooks, account, "after")
        deliver(hooks)
    during, after = inbox.received
    stamp = int(clock.now().timestamp())
    verify = readme_verify()
    for secret in (endpoint.secret, new_secret):
        assert verify(secret, during.headers["chatmeter-signature"], during.body, now=stamp - 86401)
    assert verify(new_secret, after.headers["chatmeter-signature"], after.body, now=stamp)
    assert not verify(endpoint.secret, after.headers["chatmeter-signature"], after.body, now=stamp)
