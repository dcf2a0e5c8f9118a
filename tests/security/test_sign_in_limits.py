"""Sign-in and sign-up limits against a stranger (issue #8, item 8): failed sign-ins are
counted, successful ones are not, and a stranger's failures from his address do not
lock the user out at hers; sign-ups (an argon2 hash each) are limited per address and
in all. On the in-memory limiter and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from chatmeter.accounts.models import Account
from chatmeter.context import Context
from chatmeter.web.app import create_app
from tests.support.panel import PASSWORD, Panel

TOO_MANY = "Too many sign-in attempts; please wait a minute and try again."


@dataclass
class Site:
    """The app, its panel limits counted in memory or in Redis, and a tag that makes this
    test's emails and addresses its own (tests running at once share the Redis database)."""

    app: FastAPI
    tag: str

    def browser(self, who: str) -> Panel:
        client = TestClient(self.app, base_url="http://127.0.0.1", client=(self.at(who), 50000))
        return Panel(client)

    def at(self, who: str) -> str:
        return f"{who}-{self.tag}"

    def email(self, who: str) -> str:
        return f"{who}-{self.tag}@shop.example"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def site(request: pytest.FixtureRequest, ctx: Context) -> Iterator[Site]:
    tag = uuid.uuid4().hex[:12]
    if request.param == "memory":
        yield Site(create_app(ctx), tag)
        return
    import redis

    ctx.settings.redis_url = request.getfixturevalue("redis_url")
    ctx.settings.sign_up_rate = "10000/minute"  # shared by every test: limited in memory below
    yield Site(create_app(ctx), tag)
    client = redis.Redis.from_url(ctx.settings.redis_url)
    for key in client.scan_iter(match=f"*{tag}*"):
        client.delete(key)
    client.close()


def test_a_strangers_wrong_passwords_do_not_lock_the_user_out(site: Site) -> None:
    owner = site.email("owner")
    assert site.browser("home").sign_up(owner).status_code == 303
    stranger = site.browser("stranger")
    answers = [stranger.sign_in(owner, "not the password").status_code for _ in range(25)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
    # The stranger is refused even with the right password: guessing stays bounded.
    assert stranger.sign_in(owner).status_code == 429
    # The user, at her own address, signs in as always.
    assert site.browser("home").sign_in(owner).status_code == 303


def test_successful_sign_ins_are_not_counted(site: Site) -> None:
    owner = site.email("owner")
    assert site.browser("home").sign_up(owner).status_code == 303
    for _ in range(12):
        assert site.browser("home").sign_in(owner).status_code == 303


def test_failures_are_still_limited_per_email_and_address(site: Site) -> None:
    owner = site.email("owner")
    home = site.browser("home")
    home.sign_up(owner)
    for _ in range(5):
        assert home.sign_in(owner, password="wrong password!").status_code == 401
    refused = home.sign_in(owner)
    assert refused.status_code == 429
    assert TOO_MANY in refused.text


def test_sign_ups_are_limited_per_address(site: Site, ctx: Context) -> None:
    answers = [
        site.browser("stranger").sign_up(site.email(f"shop{n}")).status_code for n in range(11)
    ]
    assert answers == [303] * 10 + [429]
    refused = site.browser("stranger").sign_up(site.email("one-more"))
    assert refused.status_code == 429
    assert "Too many sign-ups from here for now" in refused.text
    with ctx.db.read() as session:
        assert session.scalar(select(func.count(Account.id))) == 10
    assert site.browser("elsewhere").sign_up(site.email("elsewhere")).status_code == 303


def test_a_refused_sign_up_costs_no_password_hash(site: Site) -> None:
    """The limit is checked before the password is hashed: bad input counts too."""
    stranger = site.browser("stranger")
    for n in range(10):
        assert stranger.sign_up(site.email(f"shop{n}"), password="short").status_code == 422
    assert stranger.sign_up(site.email("shop"), password=PASSWORD).status_code == 429


def test_sign_ups_are_limited_in_all(ctx: Context) -> None:
    ctx.settings.sign_up_rate = "3/minute"
    site = Site(create_app(ctx), "all")
    answers = [site.browser(f"n{n}").sign_up(site.email(f"n{n}")).status_code for n in range(4)]
    assert answers == [303, 303, 303, 429]
