"""The tenant-isolation matrix: every guarded route, called by a stranger and by
another account with a victim's real ids.

``strangers`` and ``another_account`` add what they find to a ``Findings`` list, so
that one run reports every route that fails, not just the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from chatmeter.billing.gateways import ManualGateway
from chatmeter.clock import FixedClock
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.web.app import create_app
from tests.security.routes import COVERAGE, ID_KINDS, Route, Rule, app_routes
from tests.security.tenants import MISSING_ID, Tenant, changes, snapshot
from tests.support.context import START

CSRF_VALUE = re.compile(r'((?:name="csrf_token" value|name="csrf-token" content)=")[^"]+"')


def route_table() -> list[Route]:
    """The app's routes; building the app touches no database."""
    settings = Settings(
        _env_file=None, env=Env.TEST, database_url="sqlite://", data_dir=Path("unused")
    )
    ctx = Context(
        settings=settings,
        db=Database("sqlite://"),
        clock=FixedClock(START),
        gateway=ManualGateway(auto_approve=False),
    )
    return list(app_routes(create_app(ctx)))


@dataclass
class World:
    ctx: Context
    app: FastAPI
    a: Tenant  # the victim, whose ids are tried
    b: Tenant  # the other customer, who tries them

    def call(
        self, route: Route, rule: Rule, values: Mapping[str, int], *, caller: Tenant | None
    ) -> httpx.Response:
        """``route`` with ``values`` in its path and query, as ``caller`` (None: a stranger)."""
        path = route.path
        query: dict[str, int | str] = dict(rule.params)
        for name, value in values.items():
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", str(value))
            else:
                query[name] = value
        if rule.guard == "api":
            client = caller.api if caller else TestClient(self.app)
            return client.request(
                route.method,
                path,
                params=query,
                json=rule.json,
                files=rule.files,
                headers=dict(rule.headers),
            )
        client = caller.panel if caller else TestClient(self.app, base_url="http://127.0.0.1")
        csrf = caller.csrf() if caller else ""
        if rule.scripted:
            return client.request(
                route.method,
                path,
                params=query,
                json=rule.json,
                files=rule.files,
                headers={"X-CSRF-Token": csrf},
                follow_redirects=False,
            )
        data = None if rule.form is None else {**rule.form, "csrf_token": csrf}
        return client.request(route.method, path, params=query, data=data, follow_redirects=False)


def guarded_routes() -> Iterator[tuple[Route, Rule]]:
    """Routes for an account's people and keys; those that end a session come last."""
    pairs = [(r, COVERAGE[r.key]) for r in route_table() if COVERAGE[r.key].guard != "public"]
    yield from sorted(pairs, key=lambda pair: (pair[1].last, pair[0].method != "GET"))


# --- checks ----------------------------------------------------------------------------


class Findings(list[str]):
    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.append(what)

    def report(self) -> str:
        return f"{len(self)} isolation failure(s):\n  " + "\n  ".join(self)


def shape(response: httpx.Response, ids: Mapping[int, str]) -> tuple[Any, ...]:
    """What a caller learns from a response, with the ids it was asked about as
    placeholders: status, type, where it redirects and the body."""
    kind = response.headers.get("content-type", "")
    body: Any = CSRF_VALUE.sub(r'\1"', response.text)
    if kind.startswith("application/json"):
        body = _placeholders(response.json(), ids)
    return response.status_code, kind, response.headers.get("location"), body


def _placeholders(value: Any, ids: Mapping[int, str]) -> Any:
    if isinstance(value, dict):
        return {k: _placeholders(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, ids) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value).isdigit() and int(value) in ids:
        return ids[int(value)]
    return value


def leaks(response: httpx.Response, victim: Tenant) -> list[str]:
    return [canary for canary in victim.canaries if canary in response.text]


def listed_ids(response: httpx.Response) -> list[int]:
    """The ``id`` of each item in a JSON list answer (or the first list in an object)."""
    body = response.json()
    if isinstance(body, dict):
        body = next((v for v in body.values() if isinstance(v, list)), [])
    return [item["id"] for item in body if isinstance(item, dict) and "id" in item]


# --- the probes -------------------------------------------------------------------------


def another_account(world: World, found: Findings) -> None:
    """Every route, every method, every id of A's: B gets the non-existent id's answer,
    sees nothing of A's and changes nothing of A's; without ids, B's answer is B's own."""
    ctx, a, b = world.ctx, world.a, world.b
    for kind in ID_KINDS:  # or a probe would be skipped for want of an id
        assert a.ids(ctx, kind) and b.ids(ctx, kind), f"a tenant owns no {kind}"
    before = snapshot(ctx, a.account_id)
    for route, rule in guarded_routes():
        for probe in _id_probes(world, route, rule):
            response = world.call(route, rule, probe.values, caller=b)
            reference = world.call(route, rule, probe.missing, caller=b)
            where = f"{route.key} as B with A's {probe.label}"
            found.check(
                reference.status_code == 404 or not probe.in_path,
                f"{route.key} with a non-existent id answers {reference.status_code}, not 404: "
                f"give its rule a valid body so that the id decides ({reference.text[:120]!r})",
            )
            asked = {v: f"<{n}>" for n, v in probe.values.items()}
            absent = {v: f"<{n}>" for n, v in probe.missing.items()}
            found.check(
                shape(response, asked) == shape(reference, absent),
                f"{where}: {response.status_code} {response.text[:200]!r} differs from a "
                f"non-existent id's {reference.status_code} {reference.text[:200]!r}",
            )
            found.check(not leaks(response, a), f"{where}: shows {leaks(response, a)}")
            found.check(
                not changes(before, snapshot(ctx, a.account_id)),
                f"{where}: changed {changes(before, snapshot(ctx, a.account_id))}",
            )
            before = snapshot(ctx, a.account_id)  # report each change once
        for label, values in _scoped_probes(world, route, rule):
            response = world.call(route, rule, values, caller=b)
            where = f"{route.key} as B{label}"
            found.check(response.status_code < 500, f"{where}: {response.status_code}")
            found.check(not leaks(response, a), f"{where}: shows {leaks(response, a)}")
            if rule.lists and response.status_code == 200:
                theirs = set(a.ids(ctx, rule.lists)) & set(listed_ids(response))
                found.check(not theirs, f"{where}: lists A's {rule.lists} {sorted(theirs)}")
            found.check(
                not changes(before, snapshot(ctx, a.account_id)),
                f"{where}: changed {changes(before, snapshot(ctx, a.account_id))}",
            )
            before = snapshot(ctx, a.account_id)


@dataclass(frozen=True)
class Probe:
    label: str  # what of A's is sent
    values: dict[str, int]  # the ids to send, by parameter
    missing: dict[str, int]  # the same with A's replaced by an id nobody has
    in_path: bool  # a missing id in the path is a 404; in a query it filters or is refused


def _id_probes(world: World, route: Route, rule: Rule) -> Iterator[Probe]:
    """Each path parameter A's or B's own, at least one A's: every id A owns of a kind is
    tried with B's own for the others. Query parameters that name rows (``rule.query``)
    are tried the same way, with B's own ids in the path."""
    ctx, a, b = world.ctx, world.a, world.b
    own = {name: b.ids(ctx, name)[0] for name in route.params}
    for name in route.params:
        for theirs in a.ids(ctx, name):
            yield Probe(name, own | {name: theirs}, own | {name: MISSING_ID}, True)
    if len(route.params) > 1:
        values = {name: a.ids(ctx, name)[0] for name in route.params}
        yield Probe("ids", values, dict.fromkeys(route.params, MISSING_ID), True)
    for param, kind in rule.query.items():
        for theirs in a.ids(ctx, kind):
            yield Probe(
                f"{kind} in ?{param}", own | {param: theirs}, own | {param: MISSING_ID}, False
            )


def _scoped_probes(world: World, route: Route, rule: Rule) -> Iterator[tuple[str, dict[str, int]]]:
    """B's own call of a route without ids, and paging from each of A's ids."""
    if route.params:
        own = {name: world.b.ids(world.ctx, name)[0] for name in route.params}
    else:
        own = {}
        yield "", own
    for param, kind in rule.cursor.items():
        for theirs in world.a.ids(world.ctx, kind):
            yield f" paging from A's {kind} (?{param}={theirs})", own | {param: theirs}


def strangers(world: World, found: Findings) -> None:
    """No key, no session, A's ids: the API says 401, the panel sends to its sign-in
    page (its scripts' endpoints say 401, a form without a CSRF token gets 403)."""
    ctx, a = world.ctx, world.a
    before = snapshot(ctx, a.account_id)
    for route, rule in guarded_routes():
        values = {name: a.ids(ctx, name)[0] for name in route.params}
        response = world.call(route, rule, values, caller=None)
        where = f"{route.key} without a {'key' if rule.guard == 'api' else 'session'}"
        if rule.guard == "api":
            refused = (
                response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
            )
        else:
            refused = (response.status_code, response.headers.get("location")) in {
                (303, "/panel/sign-in"),
                (401, None),
            } or response.status_code == 403
        found.check(refused, f"{where}: {response.status_code} {response.text[:150]!r}")
        found.check(not leaks(response, a), f"{where}: shows {leaks(response, a)}")
    found.check(not changes(before, snapshot(ctx, a.account_id)), "a stranger changed A's rows")
