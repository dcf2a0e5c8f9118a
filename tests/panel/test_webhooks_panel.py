"""Settings → Webhooks in the panel: the owner adds an endpoint (its secret shown once),
sends a test event and reads its delivery, changes, rotates and removes it; a member
can do none of it; another account's endpoint is not found; bad input says why."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.web.app import create_app
from chatmeter.webhooks.delivery import MAX_ATTEMPTS, backoff
from tests.panel.test_settings import add_member
from tests.support.panel import Panel, new_panel
from tests.support.receiver import receiver
from tests.webhooks.support import deliver, on_loopback
from tests.webhooks.test_signing import readme_verify

PAGE = "/panel/settings/webhooks"
SECRET = re.compile(r'readonly value="(whsec_[A-Za-z0-9_-]+)"')
ENDPOINT = re.compile(r'href="/panel/settings/webhooks/(\d+)"')


def loopback_panel(ctx: Context) -> tuple[Context, Panel]:
    hooks = on_loopback(ctx)
    return hooks, Panel(TestClient(create_app(hooks), base_url="http://127.0.0.1"))


def add(panel: Panel, url: str, **fields: str) -> tuple[int, str]:
    response = panel.post(PAGE, {"url": url, "all_events": "on"} | fields, page=PAGE)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    secret = SECRET.search(response.text)
    endpoint = ENDPOINT.search(response.text)
    assert secret and endpoint, response.text
    return int(endpoint[1]), secret[1]


def test_the_owner_adds_an_endpoint_and_a_test_event_reaches_it(
    ctx: Context, clock: FixedClock
) -> None:
    hooks, panel = loopback_panel(ctx)
    with panel.client, receiver() as inbox:
        panel.sign_up()
        assert f'href="{PAGE}"' in panel.client.get("/panel/settings").text
        assert "No endpoints yet." in panel.client.get(PAGE).text
        endpoint_id, secret = add(panel, inbox.url, description="Shop backend")
        listing = panel.client.get(PAGE).text
        assert secret not in listing and "Shop backend" in listing and "all events" in listing
        page = f"{PAGE}/{endpoint_id}"
        assert "Nothing delivered yet." in panel.client.get(page).text
        sent = panel.post(f"{page}/test", {}, page=page)
        assert sent.status_code == 303 and sent.headers["location"] == f"{page}?done=test#log"
        deliver(hooks)
        log = panel.client.get(sent.headers["location"]).text
    assert "A test event is on its way" in log
    assert 'data-status="delivered"' in log and "HTTP 200" in log
    [got] = inbox.received
    assert got.headers["chatmeter-event-id"] in log
    assert readme_verify()(
        secret, got.headers["chatmeter-signature"], got.body, now=clock.now().timestamp()
    )


def test_a_failed_delivery_is_logged_with_the_answer_and_sent_again(
    ctx: Context, clock: FixedClock
) -> None:
    hooks, panel = loopback_panel(ctx)
    with panel.client, receiver(*[500] * MAX_ATTEMPTS, 200) as inbox:
        panel.sign_up()
        endpoint_id, _ = add(panel, inbox.url)
        page = f"{PAGE}/{endpoint_id}"
        panel.post(f"{page}/test", {}, page=page)
        deliver(hooks)
        log = panel.client.get(page).text
        assert 'data-status="pending"' in log and "HTTP 500: nope" in log and "next try" in log
        assert "/resend" not in log  # a delivery still being tried has no "Send again"
        for attempt in range(2, MAX_ATTEMPTS + 1):
            clock.advance(seconds=backoff(attempt - 1).total_seconds())
            deliver(hooks)
        log = panel.client.get(page).text
        assert 'data-status="dead"' in log and ">Failed<" in log
        resend = re.search(r'action="(/panel/settings/webhooks/\d+/deliveries/\d+/resend)"', log)
        assert resend, log
        again = panel.post(resend[1], {}, page=page)
        assert again.status_code == 303
        assert "sent again" in panel.client.get(again.headers["location"]).text
        deliver(hooks)
        log = panel.client.get(page).text
    assert 'data-status="delivered"' in log and "HTTP 200" in log
    assert len(inbox.received) == MAX_ATTEMPTS + 1


def test_bad_urls_are_refused_with_the_reason_and_nothing_is_added(panel: Panel) -> None:
    panel.sign_up()
    for url, reason in (
        ("http://hooks.example.com/in", "The URL must start with https://."),
        ("https://127.0.0.1/in", "private or local address"),
        ("https://169.254.169.254/latest", "private or local address"),
        ("https://localhost/in", "local name"),
    ):
        response = panel.post(PAGE, {"url": url, "all_events": "on"}, page=PAGE)
        assert response.status_code == 422, url
        assert reason in html.unescape(response.text)
        assert f'value="{url}"' in response.text  # the form keeps what was typed
    assert "No endpoints yet." in panel.client.get(PAGE).text


def test_the_owner_changes_rotates_and_removes_an_endpoint(panel: Panel) -> None:
    panel.sign_up()
    endpoint_id, secret = add(panel, "https://hooks.example.com/in")
    page = f"{PAGE}/{endpoint_id}"
    saved = panel.post(
        page,
        {"url": "https://hooks.example.com/v2", "description": "", "events": "balance.low"},
        page=page,
    )
    assert saved.status_code == 303
    shown = panel.client.get(saved.headers["location"]).text
    assert "The endpoint is saved." in shown and 'value="https://hooks.example.com/v2"' in shown
    assert 'value="balance.low" checked' in shown and 'value="usage.surge">' in shown
    assert 'name="enabled">' in shown  # left unticked: turned off
    assert "turned off" in panel.client.get(PAGE).text
    rotated = panel.post(f"{page}/rotate", {}, page=page)
    new_secret = SECRET.search(rotated.text)
    assert new_secret and new_secret[1] != secret
    assert new_secret[1] not in panel.client.get(page).text
    removed = panel.post(f"{page}/delete", {}, page=page)
    assert removed.status_code == 303
    assert "The endpoint is removed." in panel.client.get(removed.headers["location"]).text
    assert panel.client.get(page).status_code == 404


def test_another_accounts_endpoint_is_not_found(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    other = new_panel(ctx)
    other.sign_up("other@example.com")
    endpoint_id, _ = add(other, "https://hooks.other.example/in")
    page = f"{PAGE}/{endpoint_id}"
    assert panel.client.get(page).status_code == 404
    for action in ("", "/test", "/rotate", "/delete"):
        refused = panel.post(f"{page}{action}", {"url": "https://taken.example/in"}, page=PAGE)
        assert refused.status_code == 404, action
        assert "No such webhook endpoint." in refused.text
    for target in ("999", "abc", "1" * 30):
        assert panel.client.get(f"{PAGE}/{target}").status_code == 404
    assert "hooks.other.example" in other.client.get(page).text


def test_a_member_can_neither_see_nor_manage_webhooks(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    endpoint_id, _ = add(panel, "https://hooks.example.com/in")
    add_member(ctx)
    member = new_panel(ctx)
    member.sign_in("member@example.com")
    listing = member.client.get(PAGE).text
    assert "Only the account's owner can see and manage webhooks." in listing
    assert "hooks.example.com" not in listing
    assert member.client.get(f"{PAGE}/{endpoint_id}").status_code == 403
    for response in (
        member.post(PAGE, {"url": "https://mine.example/in"}, page=PAGE),
        member.post(f"{PAGE}/{endpoint_id}/test", {}, page=PAGE),
        member.post(f"{PAGE}/{endpoint_id}/delete", {}, page=PAGE),
    ):
        assert response.status_code == 403
        assert "Only the account&#39;s owner can manage webhooks." in response.text
    assert "hooks.example.com" in panel.client.get(PAGE).text
