"""The doctor's checks of the settings alone: each says what is wrong and what to set."""

from __future__ import annotations

from typing import Any

import pytest

from chatmeter.config import Env, Settings
from chatmeter.ops import checks
from chatmeter.ops.findings import Status

SECRET = "s" * 48
LIVE = {
    "payment_gateway": "stripe",
    "stripe_secret_key": "sk_live_" + "a" * 24,
    "stripe_publishable_key": "pk_live_" + "b" * 24,
    "stripe_webhook_secret": "whsec_" + "c" * 24,
}


def production(**changes: Any) -> Settings:
    """A configuration fit for customers, with ``changes``."""
    values: dict[str, Any] = {
        "env": Env.PRODUCTION,
        "secret_key": SECRET,
        "base_url": "https://chat.example.com",
        "database_url": "postgresql://chatmeter@db.internal/chatmeter",
        "mailer": "smtp",
        "smtp_host": "smtp.example.com",
        "smtp_tls": "starttls",
        "smtp_username": "mailer",
        "smtp_password": "pw",
        "trusted_proxies": "127.0.0.1",
        "redis_url": "redis://127.0.0.1:6379/0",
    }
    return Settings(_env_file=None, **(values | changes))


def statuses(settings: Settings) -> dict[str, Status]:
    return {f.check: f.status for f in (check(settings) for check in checks.SETTINGS_CHECKS)}


def test_a_production_configuration_passes_every_settings_check() -> None:
    assert set(statuses(production()).values()) == {Status.OK}
    assert set(statuses(production(**LIVE)).values()) == {Status.OK}


@pytest.mark.parametrize(
    ("changes", "check", "status", "fix_names"),
    [
        ({"env": Env.DEVELOPMENT}, "environment", Status.FAIL, "CHATMETER_ENV"),
        ({"base_url": "http://chat.example.com"}, "base-url", Status.FAIL, "https"),
        ({"base_url": "https://localhost"}, "base-url", Status.WARN, "CHATMETER_BASE_URL"),
        ({"database_url": "sqlite:///x.db"}, "database-kind", Status.WARN, "PostgreSQL"),
        ({"mailer": "file"}, "mailer", Status.FAIL, "CHATMETER_MAILER=smtp"),
        ({"smtp_tls": "none"}, "mailer", Status.WARN, "CHATMETER_SMTP_TLS"),
        ({"trusted_proxies": ""}, "trusted-proxies", Status.WARN, "CHATMETER_TRUSTED_PROXIES"),
        ({"trusted_proxies": "0.0.0.0/0"}, "trusted-proxies", Status.FAIL, "reverse proxies"),
        ({"trusted_proxies": "10.0.0.0/4"}, "trusted-proxies", Status.FAIL, "reverse proxies"),
        ({"metrics_networks": "::/0"}, "metrics", Status.FAIL, "CHATMETER_METRICS_TOKEN"),
        ({"redis_url": None}, "redis", Status.WARN, "CHATMETER_REDIS_URL"),
    ],
)
def test_an_unsafe_setting_is_named_with_its_fix(
    changes: dict[str, Any], check: str, status: Status, fix_names: str
) -> None:
    settings = production(**changes)
    finding = next(f for c in checks.SETTINGS_CHECKS if (f := c(settings)).check == check)
    assert finding.status is status, finding
    assert fix_names in finding.fix
    others = {name: s for name, s in statuses(settings).items() if name != check}
    assert set(others.values()) == {Status.OK}


@pytest.mark.parametrize(
    ("changes", "status", "said"),
    [
        ({"stripe_secret_key": "sk_test_" + "a" * 24}, Status.FAIL, "test key"),
        ({"stripe_publishable_key": "pk_test_" + "a" * 24}, Status.FAIL, "live key"),
        ({"stripe_secret_key": "pk_live_" + "a" * 24}, Status.FAIL, "secret key"),
        ({"stripe_publishable_key": "sk_live_" + "a" * 24}, Status.FAIL, "publishable"),
        ({"stripe_webhook_secret": "secret"}, Status.FAIL, "whsec_"),
        ({"base_url": "http://chat.example.com"}, Status.FAIL, "https"),
        ({"stripe_api_base": "http://127.0.0.1:12111"}, Status.WARN, "test server"),
        (
            {
                "stripe_secret_key": "sk_test_" + "a" * 24,
                "stripe_publishable_key": "pk_test_" + "b" * 24,
            },
            Status.WARN,
            "test-mode",
        ),
        ({"stripe_secret_key": "rk_live_" + "a" * 24}, Status.OK, "live keys"),
    ],
)
def test_stripe_keys_must_be_of_one_mode_and_webhooks_https(
    changes: dict[str, Any], status: Status, said: str
) -> None:
    finding = checks.stripe(production(**(LIVE | changes)))
    assert finding.status is status, finding
    assert said in finding.message


def test_webhooks_into_private_networks_are_a_warning() -> None:
    [finding] = [
        f
        for f in (
            c(production(webhook_allow_private_networks=True)) for c in checks.SETTINGS_CHECKS
        )
        if f.check == "webhooks"
    ]
    assert finding.status == Status.WARN
    assert "CHATMETER_WEBHOOK_ALLOW_PRIVATE_NETWORKS" in finding.message
