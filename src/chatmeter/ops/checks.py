"""The doctor's checks of the settings alone: pure functions of ``Settings``, no I/O.

``Settings`` already refuses to load what can never be right in production (a
missing secret, a frozen clock, free payments); these catch what loads but is
unsafe or unwise for serving real customers, and say what to set instead.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from chatmeter.config import Env, Settings
from chatmeter.ops.findings import Finding, fail, ok, warn

# A network this wide in the trusted proxies lets strangers pose as any visitor.
WIDEST_TRUSTED_PREFIX = {4: 8, 6: 32}


def environment(settings: Settings) -> Finding:
    if settings.env is not Env.PRODUCTION:
        return fail(
            "environment",
            f"CHATMETER_ENV={settings.env.value}: development conveniences (demo account, "
            "payments approved without money, frozen clock) and this machine only",
            "unset CHATMETER_ENV (production is the default) and set CHATMETER_SECRET_KEY",
        )
    return ok("environment", "production")


def base_url(settings: Settings) -> Finding:
    url = urlsplit(settings.base_url)
    if url.scheme != "https":
        return fail(
            "base-url",
            f"CHATMETER_BASE_URL={settings.base_url} is not https: sessions and forms travel "
            "in clear, cookies are not Secure, no HSTS, and Stripe will not call a webhook there",
            "serve behind a reverse proxy with TLS and set CHATMETER_BASE_URL=https://<your host>",
        )
    if url.hostname in {"localhost", "127.0.0.1", "::1"}:
        return warn(
            "base-url",
            f"CHATMETER_BASE_URL={settings.base_url} points at this machine: links in emails "
            "and the embed snippet will not work for anyone else",
            "set CHATMETER_BASE_URL to the public https address",
        )
    return ok("base-url", settings.base_url)


def database_kind(settings: Settings) -> Finding:
    if settings.database_url.startswith("sqlite"):
        return warn(
            "database-kind",
            "SQLite: one machine, one writer at a time; fine for a small installation",
            "to run several web or worker processes, use PostgreSQL "
            "(CHATMETER_DATABASE_URL=postgresql://…)",
        )
    return ok("database-kind", "PostgreSQL")


def mailer(settings: Settings) -> Finding:
    if settings.mailer == "file":
        return fail(
            "mailer",
            f"CHATMETER_MAILER=file: emails (receipts, password resets, low balance) are "
            f"written to {settings.mail_path}, never sent",
            "set CHATMETER_MAILER=smtp and CHATMETER_SMTP_HOST/PORT/TLS/USERNAME/PASSWORD",
        )
    if (
        settings.smtp_tls == "none"
        and settings.smtp_username
        and settings.smtp_host not in {"127.0.0.1", "::1", "localhost"}
    ):
        return warn(
            "mailer",
            f"the SMTP password goes in clear to {settings.smtp_host}",
            "set CHATMETER_SMTP_TLS=starttls (port 587) or tls (port 465)",
        )
    return ok("mailer", f"SMTP via {settings.smtp_host}:{settings.smtp_port}")


def trusted_proxies(settings: Settings) -> Finding:
    networks = settings.trusted_networks
    wide = [n for n in networks if n.prefixlen < WIDEST_TRUSTED_PREFIX[n.version]]
    if wide:
        return fail(
            "trusted-proxies",
            "CHATMETER_TRUSTED_PROXIES trusts "
            + ", ".join(str(n) for n in wide)
            + ": anyone there can pose as any visitor and escape the rate limits",
            "list only the addresses of your reverse proxies (e.g. 127.0.0.1 or 10.0.0.5)",
        )
    if not networks:
        return warn(
            "trusted-proxies",
            "no trusted proxies: behind a reverse proxy every visitor has the proxy's address, "
            "so one visitor's rate limit stops them all",
            "set CHATMETER_TRUSTED_PROXIES to your reverse proxy's address (e.g. 127.0.0.1); "
            "ignore this if the app faces the internet directly",
        )
    return ok("trusted-proxies", ", ".join(str(n) for n in networks))


def metrics_access(settings: Settings) -> Finding:
    everyone = [n for n in settings.metrics_allowed_networks if n.prefixlen == 0]
    if everyone:
        return fail(
            "metrics",
            "CHATMETER_METRICS_NETWORKS lets anyone read /metrics",
            "list your Prometheus server's network only, or use CHATMETER_METRICS_TOKEN",
        )
    how = ", ".join(str(n) for n in settings.metrics_allowed_networks) or "no network"
    token = " or with the token" if settings.metrics_token else ""
    return ok("metrics", f"/metrics answers {how}{token}")


def shared_limits(settings: Settings) -> Finding:
    if not settings.redis_url:
        return warn(
            "redis",
            "no CHATMETER_REDIS_URL: rate limits are counted per process, so N web processes "
            "allow N times the configured rates",
            "set CHATMETER_REDIS_URL=redis://… when you run more than one web process",
        )
    return ok("redis", "rate limits shared in Redis")


def webhook_egress(settings: Settings) -> Finding:
    """Customers' webhooks must not be able to reach this server's own networks."""
    if settings.webhook_allow_private_networks:
        return warn(
            "webhooks",
            "CHATMETER_WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: a customer's webhook URL may "
            "reach loopback and private networks (this server's database, Redis, metadata)",
            "turn it off unless every receiver is yours and on your own network",
        )
    return ok("webhooks", "deliveries reach public https addresses only")


def stripe(settings: Settings) -> Finding:
    """With Stripe: keys of one mode (live with live, test with test), over https."""
    if settings.payment_gateway != "stripe":
        return ok("stripe", "payments through the manual gateway (no Stripe)")
    secret = settings.stripe_secret_key or ""
    public = settings.stripe_publishable_key or ""
    secret_mode = _key_mode(secret, ("sk_", "rk_"))
    public_mode = _key_mode(public, ("pk_",))
    if secret_mode is None:
        return fail(
            "stripe",
            "CHATMETER_STRIPE_SECRET_KEY does not look like a Stripe secret key "
            "(sk_live_…, sk_test_… or a restricted rk_…)",
            "copy the secret key from the Stripe dashboard, Developers → API keys",
        )
    if public_mode is None:
        return fail(
            "stripe",
            "CHATMETER_STRIPE_PUBLISHABLE_KEY does not look like a publishable key (pk_…)",
            "copy the publishable key from the Stripe dashboard, Developers → API keys",
        )
    if secret_mode != public_mode:
        return fail(
            "stripe",
            f"the secret key is a {secret_mode} key, the publishable key a {public_mode} key",
            "take both keys from the same mode of the Stripe dashboard",
        )
    if not (settings.stripe_webhook_secret or "").startswith("whsec_"):
        return fail(
            "stripe",
            "CHATMETER_STRIPE_WEBHOOK_SECRET does not look like a signing secret (whsec_…)",
            "copy the endpoint's signing secret from Developers → Webhooks",
        )
    if not settings.base_url.startswith("https://"):
        return fail(
            "stripe",
            "Stripe sends webhooks to https addresses only, and CHATMETER_BASE_URL is "
            f"{settings.base_url}",
            "set CHATMETER_BASE_URL=https://<your host>",
        )
    if settings.stripe_api_base != "https://api.stripe.com":
        return warn(
            "stripe",
            f"CHATMETER_STRIPE_API_BASE={settings.stripe_api_base}: requests go to a "
            "Stripe-compatible test server, not Stripe",
            "unset CHATMETER_STRIPE_API_BASE",
        )
    if secret_mode == "test":
        return warn(
            "stripe",
            "Stripe test-mode keys: no real money is taken",
            "switch to the live keys (sk_live_…, pk_live_…) when you are ready",
        )
    return ok("stripe", "Stripe live keys, webhooks over https")


def _key_mode(key: str, prefixes: tuple[str, ...]) -> str | None:
    """``live`` or ``test`` for a key of one of ``prefixes`` (``sk_live_…``), else None."""
    for prefix in prefixes:
        for mode in ("live", "test"):
            if key.startswith(f"{prefix}{mode}_") and len(key) > len(prefix) + len(mode) + 8:
                return mode
    return None


SETTINGS_CHECKS: tuple[Callable[[Settings], Finding], ...] = (
    environment,
    base_url,
    database_kind,
    mailer,
    trusted_proxies,
    metrics_access,
    shared_limits,
    webhook_egress,
    stripe,
)
