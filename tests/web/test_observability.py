"""/healthz, /readyz, /metrics and request ids, on the real app (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from chatmeter.context import Context
from chatmeter.jobs.models import JobLease
from chatmeter.notifications.models import OutboxMessage
from chatmeter.web.app import create_app
from tests.support.context import derived
from tests.support.net import free_port

LOCAL = ("127.0.0.1", 50000)
STRANGER = ("203.0.113.5", 50000)
TOKEN = "t" * 32


def client(ctx: Context, address: tuple[str, int] = LOCAL) -> TestClient:
    return TestClient(create_app(ctx), client=address)


@pytest.fixture
def local(ctx: Context) -> Iterator[TestClient]:
    with client(ctx) as c:
        yield c


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


# --- alive and ready -----------------------------------------------------------------------


def test_healthz_says_alive(local: TestClient) -> None:
    assert local.get("/healthz").json() == {"status": "ok"}


def test_readyz_names_the_model_not_loaded_yet(local: TestClient) -> None:
    reply = local.get("/readyz")
    assert reply.status_code == 503
    checks = reply.json()["checks"]
    assert checks["database"] == "ok"
    assert "embedding model" in checks["model"]
    assert "redis" not in checks  # not configured


def test_readyz_names_redis_and_the_database_when_they_do_not_answer(ctx: Context) -> None:
    broken = Context.from_settings(
        ctx.settings.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:{free_port()}/0",
                "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
            }
        )
    )
    try:
        with client(broken) as c:
            reply = c.get("/readyz")
    finally:
        broken.close()
    assert reply.status_code == 503
    checks = reply.json()["checks"]
    assert checks["redis"] != "ok"
    assert checks["database"] != "ok"


def test_readyz_with_redis_answering(ctx: Context, redis_url: str) -> None:
    with client(derived(ctx, redis_url=redis_url)) as c:
        assert c.get("/readyz").json()["checks"]["redis"] == "ok"


@pytest.mark.model
def test_readyz_is_ready_once_the_models_are_loaded(ctx: Context) -> None:
    from chatmeter.chat.admission import warm_up

    warm_up(ctx)
    with client(ctx) as c:
        reply = c.get("/readyz")
    assert reply.status_code == 200, reply.json()
    assert reply.json() == {
        "status": "ready",
        "checks": {"database": "ok", "model": "ok"},
    }


# --- who may read /metrics ------------------------------------------------------------------


def test_metrics_from_this_machine(local: TestClient) -> None:
    reply = local.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    figures = samples(reply.text)
    assert ("chatmeter_chat_turns_total", (("outcome", "complete"),)) in figures
    assert figures[("chatmeter_outbox_backlog", (("status", "pending"),))] == 0


@pytest.mark.parametrize(
    ("address", "changes", "headers", "status"),
    [
        (STRANGER, {}, {}, 403),
        (STRANGER, {"metrics_token": TOKEN}, {"Authorization": f"Bearer {TOKEN}"}, 200),
        (STRANGER, {"metrics_token": TOKEN}, {"Authorization": "Bearer wrong"}, 403),
        (STRANGER, {"metrics_networks": "203.0.113.0/24"}, {}, 200),
        # A reverse proxy on this machine relays the internet: never the metrics.
        (LOCAL, {}, {"X-Forwarded-For": "198.51.100.7"}, 403),
        (LOCAL, {"trusted_proxies": "127.0.0.1"}, {"X-Forwarded-For": "198.51.100.7"}, 403),
        (LOCAL, {"trusted_proxies": "127.0.0.1"}, {"X-Forwarded-For": "127.0.0.1"}, 200),
    ],
)
def test_metrics_are_served_to_trusted_networks_or_the_token(
    ctx: Context,
    address: tuple[str, int],
    changes: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    with client(derived(ctx, **changes), address) as c:
        assert c.get("/metrics", headers=headers).status_code == status


def test_the_database_gauges_are_read_at_scrape_time(ctx: Context, local: TestClient) -> None:
    now = ctx.clock.now()
    with ctx.db.uow() as uow:
        uow.session.add(JobLease(name="outbox", last_started_at=now - dt.timedelta(seconds=65)))
        uow.session.add(
            OutboxMessage(
                kind="test",
                dedupe_key="test-1",
                to_address="someone@example.com",
                context="{}",
                next_attempt_at=now,
                created_at=now - dt.timedelta(minutes=2),
            )
        )
        uow.commit()
    figures = samples(local.get("/metrics").text)
    assert figures[("chatmeter_job_lag_seconds", (("job", "outbox"),))] == 60.0  # every 5 s
    assert figures[("chatmeter_outbox_backlog", (("status", "pending"),))] == 1
    assert figures[("chatmeter_outbox_oldest_pending_seconds", ())] == 120.0
    assert figures[("chatmeter_training_queue", (("status", "queued"),))] == 0


# --- request ids ---------------------------------------------------------------------------


def test_every_response_carries_a_new_request_id(local: TestClient) -> None:
    first, second = local.get("/healthz"), local.get("/nowhere")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert second.headers["x-request-id"] != first.headers["x-request-id"]


@pytest.mark.parametrize(
    ("trusted", "sent", "kept"),
    [
        ("127.0.0.1", "edge-4f1c2a", True),
        ("", "edge-4f1c2a", False),  # a visitor cannot choose the id in the logs
        ("127.0.0.1", "bad id\twith spaces", False),
        ("127.0.0.1", "x" * 200, False),
    ],
)
def test_a_trusted_proxys_request_id_is_kept(
    ctx: Context, trusted: str, sent: str, kept: bool
) -> None:
    with client(derived(ctx, trusted_proxies=trusted)) as c:
        echoed = c.get("/healthz", headers={"X-Request-Id": sent}).headers["x-request-id"]
    assert (echoed == sent) is kept
