"""Webhook endpoints in the REST API: made, shown (never their secret again), changed,
tested, logged and removed; bad input is a 4xx with a JSON reason and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.web.app import create_app
from chatmeter.webhooks.endpoints import MANUAL_SENDS_PER_HOUR, MAX_ENDPOINTS
from tests.support.api import Caller, caller
from tests.support.receiver import receiver
from tests.webhooks.support import deliver, on_loopback

HOOK = "https://hooks.example.com/chatmeter"


def made(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": HOOK} | body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_endpoint_is_made_with_its_secret_shown_once(alice: Caller) -> None:
    endpoint = made(alice.client, events=["balance.low", "usage.surge"], description="Shop")
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) > 40
    assert endpoint["events"] == ["balance.low", "usage.surge"]
    assert (endpoint["url"], endpoint["description"], endpoint["enabled"]) == (HOOK, "Shop", True)
    shown = alice.client.get(f"/api/v1/webhooks/{endpoint['id']}").json()
    listed = alice.client.get("/api/v1/webhooks").json()
    assert "secret" not in shown and all("secret" not in e for e in listed)
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert made(alice.client)["events"] == ["*"]  # all by default
    every = [t["type"] for t in alice.client.get("/api/v1/webhook-event-types").json()]
    assert made(alice.client, events=every)["events"] == ["*"]  # every type is "all"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://hooks.example.com/x"}, "url"),
        ({"url": "https://127.0.0.1/x"}, "url"),
        ({"url": "https://169.254.169.254/latest"}, "url"),
        ({"url": "https://localhost:8000/x"}, "url"),
        ({"url": HOOK, "events": ["balance.exploded"]}, "events"),
        ({"url": HOOK, "events": ["test"]}, "events"),
        ({"url": HOOK, "description": "x" * 201}, "description"),
    ],
)
def test_bad_endpoints_are_refused_with_the_reason_and_nothing_is_made(
    alice: Caller, body: dict[str, Any], field: str
) -> None:
    response = alice.client.post("/api/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert alice.client.get("/api/v1/webhooks").json() == []


def test_an_account_has_at_most_ten_endpoints(alice: Caller) -> None:
    for _ in range(MAX_ENDPOINTS):
        made(alice.client)
    refused = alice.client.post("/api/v1/webhooks", json={"url": HOOK})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "quota_exceeded"
    assert len(alice.client.get("/api/v1/webhooks").json()) == MAX_ENDPOINTS


def test_an_endpoint_is_changed_rotated_and_removed(alice: Caller) -> None:
    endpoint = made(alice.client)
    url = f"/api/v1/webhooks/{endpoint['id']}"
    changed = alice.client.patch(url, json={"enabled": False, "events": ["purchase.paid"]})
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["events"]) == (False, ["purchase.paid"])
    assert changed.json()["url"] == HOOK  # left out: kept
    bad = alice.client.patch(url, json={"url": "https://10.0.0.1/x"})
    assert bad.status_code == 422 and alice.client.get(url).json()["url"] == HOOK
    rotated = alice.client.post(f"{url}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    assert alice.client.delete(url).status_code == 204
    assert alice.client.get(url).status_code == 404
    assert alice.client.get("/api/v1/webhooks").json() == []


def test_another_accounts_endpoint_is_not_found(alice: Caller, bob: Caller) -> None:
    endpoint = made(alice.client)
    url = f"/api/v1/webhooks/{endpoint['id']}"
    for method, path in (
        ("GET", url),
        ("PATCH", url),
        ("DELETE", url),
        ("POST", f"{url}/test"),
        ("POST", f"{url}/rotate-secret"),
        ("GET", f"{url}/deliveries"),
    ):
        response = bob.client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert alice.client.get(url).json()["url"] == HOOK


def test_a_test_event_reaches_the_receiver_and_shows_in_the_log(
    ctx: Context, clock: FixedClock
) -> None:
    hooks = on_loopback(ctx)
    with TestClient(create_app(hooks)) as app, receiver(500, 200) as inbox:
        owner = caller(hooks, app, "owner@example.com")
        endpoint = made(owner.client, url=inbox.url)
        log = f"/api/v1/webhooks/{endpoint['id']}/deliveries"
        sent = owner.client.post(f"/api/v1/webhooks/{endpoint['id']}/test")
        assert sent.status_code == 202
        deliver(hooks)
        [failed] = owner.client.get(log).json()
        assert (failed["status"], failed["attempts"], failed["last_status"]) == ("pending", 1, 500)
        assert failed["event_id"] == sent.json()["event_id"]
        early = owner.client.post(f"{log}/{failed['id']}/resend")  # still being tried
        assert early.status_code == 409 and early.json()["error"]["code"] == "conflict"
        clock.advance(seconds=30)
        deliver(hooks)
        [delivered] = owner.client.get(log).json()
        assert (delivered["status"], delivered["attempts"], delivered["last_status"]) == (
            "delivered",
            2,
            200,
        )
        resent = owner.client.post(f"{log}/{failed['id']}/resend")  # the receiver lost it
        assert resent.status_code == 200
        assert (resent.json()["status"], resent.json()["attempts"]) == ("pending", 0)
        deliver(hooks)
        [again] = owner.client.get(log).json()
        assert (again["status"], again["attempts"], again["event_type"]) == ("delivered", 1, "test")
    assert [r.headers["chatmeter-event-type"] for r in inbox.received] == ["test"] * 3
    assert len(set(inbox.event_ids())) == 1


def test_test_events_and_sends_again_are_limited_per_endpoint_and_hour(
    ctx: Context, clock: FixedClock
) -> None:
    hooks = on_loopback(ctx)
    with TestClient(create_app(hooks)) as app, receiver() as inbox:
        owner = caller(hooks, app, "owner@example.com")
        endpoint = made(owner.client, url=inbox.url)
        url = f"/api/v1/webhooks/{endpoint['id']}"
        for _ in range(MANUAL_SENDS_PER_HOUR - 1):
            assert owner.client.post(f"{url}/test").status_code == 202
        deliver(hooks)
        first = owner.client.get(f"{url}/deliveries").json()[-1]
        assert owner.client.post(f"{url}/deliveries/{first['id']}/resend").status_code == 200
        deliver(hooks)
        for path in (f"{url}/test", f"{url}/deliveries/{first['id']}/resend"):
            refused = owner.client.post(path)
            assert refused.status_code == 429, path
            assert refused.json()["error"]["code"] == "rate_limited"
        assert len(inbox.received) == MANUAL_SENDS_PER_HOUR
        clock.advance(hours=1, seconds=1)  # an hour later: allowed again
        assert owner.client.post(f"{url}/test").status_code == 202


def test_a_read_only_key_may_look_but_not_change(ctx: Context, app_client: TestClient) -> None:
    owner = caller(ctx, app_client, "owner@example.com")
    made(owner.client)
    key = owner.client.post("/api/v1/keys", json={"name": "ro", "scope": "read"}).json()["key"]
    reader = TestClient(app_client.app, headers={"Authorization": f"Bearer {key}"})
    assert reader.get("/api/v1/webhooks").status_code == 200
    assert reader.post("/api/v1/webhooks", json={"url": HOOK}).status_code == 403
