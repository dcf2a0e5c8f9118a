"""``chatmeter doctor``: is this configuration fit to serve real customers?

The settings' checks (``ops.checks``) and then the probes of what the settings
point at: the database answers and its migrations are current, Redis answers,
the SMTP server answers (and takes the login), the models load. Every probe has
a short deadline (``timeout``): an unreachable server is a finding, not a hang.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from chatmeter.config import Settings
from chatmeter.context import Context
from chatmeter.db import normalise_url
from chatmeter.ops.checks import SETTINGS_CHECKS
from chatmeter.ops.findings import Finding, Status, fail, ok, warn
from chatmeter.ops.health import first_line, ping_redis

DEFAULT_TIMEOUT = 5.0
# Keyword search ranks with FETCH FIRST … WITH TIES (PostgreSQL 13).
MIN_POSTGRES = 130_000  # server_version_num


def probe_engine(url: str, timeout: float) -> Engine:
    """An engine of its own that gives up connecting after ``timeout`` seconds."""
    url = normalise_url(url)
    if url.startswith("postgresql"):
        return create_engine(url, connect_args={"connect_timeout": max(1, round(timeout))})
    return create_engine(url, connect_args={"timeout": timeout})


def database(engine: Engine) -> Finding:
    path = engine.url.database or ""
    sqlite_file = engine.url.get_backend_name() == "sqlite" and path not in ("", ":memory:")
    if sqlite_file and not Path(path).exists():  # connecting would create an empty one
        return fail(
            "database",
            f"no SQLite database at {path}",
            "check CHATMETER_DATABASE_URL, then run `chatmeter migrate`",
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            if engine.dialect.name == "postgresql":
                version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
                if version < MIN_POSTGRES:
                    return fail(
                        "database",
                        f"PostgreSQL {version // 10_000} is too old",
                        f"upgrade to PostgreSQL {MIN_POSTGRES // 10_000} or later",
                    )
    except Exception as exc:
        return fail(
            "database",
            f"cannot reach the database: {first_line(exc)}",
            "check CHATMETER_DATABASE_URL, and that the server runs and lets this host in",
        )
    return ok("database", f"{engine.dialect.name} answers")


def migrations(engine: Engine) -> Finding:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from chatmeter.migrate import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except Exception as exc:
        return fail("migrations", f"cannot read the schema's version: {first_line(exc)}", "")
    if current == heads:
        return ok("migrations", "the database is at the latest migration")
    if not current:
        message = "the database has never been migrated"
    elif current - heads:
        message = (
            f"the database is at {', '.join(sorted(current))}, which this version does not "
            "know: it was migrated by a newer Chatmeter"
        )
        return fail("migrations", message, "run the newer version, or restore a backup")
    else:
        message = f"the database is at {', '.join(sorted(current))}, not at the latest"
    return fail("migrations", message, "run `chatmeter migrate`")


def redis(settings: Settings, timeout: float) -> Finding:
    if not settings.redis_url:
        return ok("redis-reachable", "not used (no CHATMETER_REDIS_URL)")
    try:
        ping_redis(settings.redis_url, timeout)
    except Exception as exc:
        return fail(
            "redis-reachable",
            f"Redis does not answer: {first_line(exc)}",
            "check CHATMETER_REDIS_URL and that Redis runs; every rate-limited request "
            "fails while it is down",
        )
    return ok("redis-reachable", "Redis answers")


def smtp(settings: Settings, timeout: float) -> Finding:
    """Connect, greet, start TLS and log in as the mailer would; send nothing."""
    if settings.mailer != "smtp":
        return ok("smtp", "not used (CHATMETER_MAILER=file)")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        client: smtplib.SMTP
        if settings.smtp_tls == "tls":
            client = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        try:
            client.ehlo()
            if settings.smtp_tls == "starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.smtp_username:
                client.login(settings.smtp_username, settings.smtp_password or "")
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except smtplib.SMTPAuthenticationError as exc:
        return fail(
            "smtp",
            f"{where} refused the login: {exc.smtp_code} {_text(exc.smtp_error)}",
            "check CHATMETER_SMTP_USERNAME and CHATMETER_SMTP_PASSWORD",
        )
    except (smtplib.SMTPException, OSError) as exc:
        return fail(
            "smtp",
            f"the SMTP server {where} does not answer: {first_line(exc) or type(exc).__name__}",
            "check CHATMETER_SMTP_HOST, _PORT and _TLS, and that this host may connect",
        )
    login = " and takes the login" if settings.smtp_username else ""
    return ok("smtp", f"{where} answers{login}")


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def models(ctx: Context, timeout: float) -> Finding:
    """Load what a chat turn loads, as ``chatmeter serve`` does before it opens its port."""
    from chatmeter.chat.admission import warm_up

    try:
        counted_with = ctx.models.check_tokenizers(
            ctx.settings.openai_tokenizer, ctx.settings.openai_tokenizers
        )
        warm_up(ctx)
    except Exception as exc:
        return fail(
            "models",
            f"the models do not load: {first_line(exc)}",
            "check CHATMETER_MODELS, CHATMETER_OPENAI_TOKENIZER and "
            "CHATMETER_OPENAI_TOKENIZERS, and that the model packages are installed",
        )
    remote = [c for c in ctx.models.choices if c.provider != "local"]
    if remote:
        problem = _model_server(ctx.settings, timeout)
        if problem:
            return fail(
                "models",
                f"the model server {ctx.settings.openai_base_url} does not answer: {problem}",
                "check CHATMETER_OPENAI_BASE_URL and CHATMETER_OPENAI_API_KEY",
            )
    loaded = [
        f"{c.value} (counted with {counted_with[c.value]})" if c.value in counted_with else c.value
        for c in ctx.models.choices
    ]
    return ok("models", "the embedding model and " + ", ".join(loaded) + " load")


def _model_server(settings: Settings, timeout: float) -> str | None:
    import httpx

    headers = {}
    if settings.openai_api_key:
        headers["Authorization"] = f"Bearer {settings.openai_api_key}"
    try:
        reply = httpx.get(
            settings.openai_base_url.rstrip("/") + "/models", headers=headers, timeout=timeout
        )
    except httpx.HTTPError as exc:
        return first_line(exc) or type(exc).__name__
    if reply.status_code >= 400:
        return f"HTTP {reply.status_code} on /models"
    return None


def examine(
    ctx: Context, *, timeout: float = DEFAULT_TIMEOUT, load_models: bool = True
) -> list[Finding]:
    """Every check, settings first, then the probes; a probe that cannot run is skipped."""
    settings = ctx.settings
    findings = [check(settings) for check in SETTINGS_CHECKS]
    engine = probe_engine(settings.database_url, timeout)
    try:
        reached = database(engine)
        findings.append(reached)
        if reached.status is Status.OK:
            findings.append(migrations(engine))
    finally:
        engine.dispose()
    probes: list[Callable[[], Finding]] = [
        lambda: redis(settings, timeout),
        lambda: smtp(settings, timeout),
    ]
    findings += [probe() for probe in probes]
    if load_models:
        findings.append(models(ctx, timeout))
    else:
        findings.append(warn("models", "not loaded (--no-models)", "run without --no-models"))
    return findings


def healthy(findings: list[Finding]) -> bool:
    return not any(f.status is Status.FAIL for f in findings)
