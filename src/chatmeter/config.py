"""One validated Settings object, read from ``CHATMETER_*`` environment variables.

Every field here is documented in README.md; ``tests/test_docs.py`` fails when
the two drift apart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import threading
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatmeter.knowledge.limits import ExtractionLimits

_EXTRACTION = ExtractionLimits()


class Env(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


# Secrets that anyone can read in this repository or its history: never accepted.
KNOWN_SECRETS = frozenset({"", "change-me"})
MIN_SECRET_LENGTH = 32
MIN_METRICS_TOKEN_LENGTH = 24
SECRET_FILE = "secret_key"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATMETER_", extra="ignore")

    # Production unless asked otherwise: a forgotten setting must never turn on the
    # development conveniences (frozen clock, free payments, demo account, any address).
    env: Env = Env.PRODUCTION
    database_url: str = "sqlite:///./var/chatmeter.db"
    data_dir: Path = Path("./var")
    secret_key: str = ""
    base_url: str = "http://127.0.0.1:8000"
    now: dt.datetime | None = None

    package_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = 5000
    package_price: Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=2)] = Decimal("9.00")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    free_tokens: Annotated[int, Field(ge=0, le=100_000_000)] = 0

    payment_gateway: Literal["manual", "stripe"] = "manual"
    payment_auto_approve: bool | None = None
    stripe_secret_key: str | None = None
    stripe_publishable_key: str | None = None
    stripe_webhook_secret: str | None = None
    # Where the stripe library sends its requests: Stripe itself, or a Stripe-compatible
    # server (a test double on this machine).
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_tolerance_seconds: Annotated[int, Field(ge=1, le=3600)] = 300
    # What every invoice PDF says about the operator who sells the tokens.
    business_name: str = "Chatmeter"
    business_address: str = ""
    business_tax_id: str = ""
    # Percent added to the package price as tax on every invoice (0: no tax line amount).
    tax_rate: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] = Decimal("0")
    renewal_retry_hours: Annotated[int, Field(ge=1, le=24 * 7)] = 24
    renewal_max_attempts: Annotated[int, Field(ge=1, le=30)] = 4

    hold_ttl_seconds: Annotated[int, Field(ge=1, le=86_400)] = 120
    # Months a package's unused tokens stay usable after the month they were bought or
    # renewed for (0: they expire on the 1st after it). Fixed on each invoice.
    rollover_months: Annotated[int, Field(ge=0, le=12)] = 0

    mailer: Literal["file", "smtp"] = "file"
    mail_from: str = "Chatmeter <no-reply@chatmeter.localhost>"
    mail_dir: Path | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: Annotated[float, Field(gt=0, le=30)] = 10.0

    # Customers' webhooks (chatmeter.webhooks): never to this server's own networks
    # unless the operator allows it; each attempt gives up after this many seconds.
    webhook_allow_private_networks: bool = False
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 10.0

    worker: Literal["inprocess", "none"] = "inprocess"
    # Sent emails, finished webhook deliveries, Stripe event ids and spent sign-in links
    # are forgotten this many days after they happened (the ``retention`` job).
    retention_days: Annotated[int, Field(ge=30, le=36_500)] = 90
    worker_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_body_bytes: Annotated[int, Field(ge=1024, le=512 * 1024 * 1024)] = 1_048_576
    max_upload_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024 * 1024)] = 20 * 1024 * 1024

    # Training runs in a child process under these limits (see training/sandbox.py).
    training_memory_mb: Annotated[int, Field(ge=512, le=1024 * 1024)] = 2048
    training_cpu_seconds: Annotated[int, Field(ge=1, le=86_400)] = 900
    training_wall_seconds: Annotated[int, Field(ge=1, le=86_400)] = 1800
    training_max_unpacked_bytes: Annotated[int, Field(ge=1024, le=4 * 1024**3)] = (
        _EXTRACTION.max_unpacked_bytes
    )
    training_max_pages: Annotated[int, Field(ge=1, le=1_000_000)] = _EXTRACTION.max_pages
    training_max_chunks: Annotated[int, Field(ge=1, le=10_000_000)] = _EXTRACTION.max_chunks
    # What one account may keep for training (see training/quotas.py).
    quota_files: Annotated[int, Field(ge=1, le=100_000_000)] = 1000
    quota_file_bytes: Annotated[int, Field(ge=1024, le=1024**4)] = 1024**3
    quota_passages: Annotated[int, Field(ge=1, le=1_000_000_000)] = 50_000

    demo: bool | None = None

    redis_url: str | None = None
    trusted_proxies: str = ""
    # Sign-ups in the panel (each costs an argon2 hash): per client address, and in all.
    sign_up_rate_per_address: str = "10/hour;50/day"
    sign_up_rate: str = "60/minute;1000/hour"
    chat_max_message_chars: Annotated[int, Field(ge=10, le=100_000)] = 2000
    chat_visitor_rate: str = "20/minute"
    chat_assistant_rate: str = "600/minute"
    chat_history_tokens: Annotated[int, Field(ge=0, le=100_000)] = 300
    chat_hold_seconds: Annotated[int, Field(ge=10, le=3600)] = 300
    chat_queue_size: Annotated[int, Field(ge=0, le=10_000)] = 16
    chat_queue_per_account: Annotated[int, Field(ge=0, le=10_000)] | None = None
    chat_concurrency: Annotated[int, Field(ge=1, le=1024)] = 8

    llm_context_window: Annotated[int, Field(ge=512, le=1_000_000)] = 2048
    llm_threads: Annotated[int, Field(ge=1, le=256)] = 1
    llm_batch_threads: Annotated[int, Field(ge=1, le=256)] = 2
    models: list[str] = ["local"]
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    openai_tokenizer: str | None = None
    # A server model's own tokenizer (by its name after "openai:"), else the one above.
    openai_tokenizers: dict[str, str] = {}
    openai_context_window: Annotated[int, Field(ge=512, le=10_000_000)] = 8192
    rate_card: dict[str, tuple[Decimal, Decimal]] = {}

    # What the operator sees (chatmeter.telemetry, chatmeter.web.observability).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # /metrics answers these networks (judged as chatmeter.web.observability says), or
    # a request bearing this token; nobody else.
    metrics_networks: str = "127.0.0.1/8, ::1"
    metrics_token: str | None = None

    @field_validator(
        "chat_visitor_rate", "chat_assistant_rate", "sign_up_rate_per_address", "sign_up_rate"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate such as 20/minute") from exc
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        from chatmeter.llm.catalog import parse_entry

        if not value:
            raise ValueError('list at least one model, e.g. ["local"]')
        for entry in value:
            parse_entry(entry)
        return value

    @field_validator("openai_tokenizers")
    @classmethod
    def _tokenizers(cls, value: dict[str, str]) -> dict[str, str]:
        from chatmeter.llm.catalog import OPENAI_PREFIX, parse_entry
        from chatmeter.llm.tokenizers import check_spec

        for model, spec in value.items():
            try:
                named = parse_entry(OPENAI_PREFIX + model).model
            except ValueError:
                named = None
            if named != model:
                raise ValueError(
                    f"{model!r} is not a server model's name: write it as it follows "
                    "'openai:' in CHATMETER_MODELS"
                )
            try:
                check_spec(spec)
            except ValueError as exc:
                raise ValueError(f"the tokenizer of {model!r}: {exc}") from exc
        return value

    @field_validator("trusted_proxies", "metrics_networks")
    @classmethod
    def _proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_METRICS_TOKEN_LENGTH:
            raise ValueError(
                f"a metrics token needs {MIN_METRICS_TOKEN_LENGTH}+ random characters "
                "(or leave it unset: /metrics then answers CHATMETER_METRICS_NETWORKS only)"
            )
        return value

    @field_validator("rate_card")
    @classmethod
    def _positive_rates(
        cls, value: dict[str, tuple[Decimal, Decimal]]
    ) -> dict[str, tuple[Decimal, Decimal]]:
        for model, (prompt, completion) in value.items():
            if prompt <= 0 or completion <= 0:
                raise ValueError(f"rates for {model!r} must be positive")
        return value

    @field_validator("now")
    @classmethod
    def _aware_now(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.payment_gateway == "stripe":
            missing = [
                name
                for name, value in (
                    ("CHATMETER_STRIPE_SECRET_KEY", self.stripe_secret_key),
                    ("CHATMETER_STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
                    ("CHATMETER_STRIPE_PUBLISHABLE_KEY", self.stripe_publishable_key),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "CHATMETER_PAYMENT_GATEWAY=stripe needs "
                    + ", ".join(missing)
                    + " (from the Stripe dashboard: Developers → API keys and → Webhooks)"
                )
        if self.env is not Env.PRODUCTION:
            return self
        refused = {
            "CHATMETER_NOW": self.now is not None,
            "CHATMETER_PAYMENT_AUTO_APPROVE=true": self.payment_auto_approve is True,
            "CHATMETER_DEMO=true": self.demo is True,
        }
        for setting, present in refused.items():
            if present:
                raise ValueError(
                    f"{setting} is refused when CHATMETER_ENV=production (the default); "
                    "set CHATMETER_ENV=development to try Chatmeter on this machine"
                )
        if self.secret_key in KNOWN_SECRETS or len(self.secret_key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"CHATMETER_SECRET_KEY must be a random value of {MIN_SECRET_LENGTH}+ characters "
                "in production (the default environment), e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`; "
                "or set CHATMETER_ENV=development to try Chatmeter on this machine"
            )
        return self

    def signing_key(self) -> str:
        """The secret that signs sessions and forms.

        Production has its own (checked at start). Development and test without one
        get a random secret made once and kept in the data folder: no installation
        ever signs with a secret that someone else knows.
        """
        if self.secret_key not in KNOWN_SECRETS or self.env is Env.PRODUCTION:
            return self.secret_key
        return _install_secret(self.data_dir / SECRET_FILE)

    def check_listen_address(self, host: str) -> None:
        """Development and test serve this machine only; ``ValueError`` for another address."""
        if self.env is not Env.PRODUCTION and host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"CHATMETER_ENV={self.env.value} serves only this machine (127.0.0.1, ::1 or "
                f"localhost), not {host!r}: its conveniences (demo account, free payments, "
                "frozen clock) must not be reachable by strangers. Set CHATMETER_ENV=production "
                "and a CHATMETER_SECRET_KEY to listen on other addresses."
            )

    @property
    def auto_approve_payments(self) -> bool:
        """Demo and test installations approve manual payments at once."""
        if self.payment_auto_approve is not None:
            return self.payment_auto_approve
        return self.env is not Env.PRODUCTION

    @property
    def create_demo(self) -> bool:
        """A demo account on first run, except in production unless asked for."""
        return self.demo if self.demo is not None else self.env is not Env.PRODUCTION

    @property
    def trusted_networks(self) -> list[IPNetwork]:
        """The reverse proxies whose ``X-Forwarded-For`` is believed (``chatmeter.http.client``)."""
        return parse_networks(self.trusted_proxies)

    @property
    def metrics_allowed_networks(self) -> list[IPNetwork]:
        """Where Prometheus may scrape ``/metrics`` from without the token."""
        return parse_networks(self.metrics_networks)

    @property
    def queue_places_per_account(self) -> int:
        """Waiting places one account may fill: by default half, so others always find room."""
        if self.chat_queue_per_account is not None:
            return min(self.chat_queue_per_account, self.chat_queue_size)
        return max(1, self.chat_queue_size // 2) if self.chat_queue_size else 0

    @property
    def mail_path(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[IPNetwork]:
    """Comma-separated addresses or networks (``10.0.0.0/8, ::1``), or ``ValueError``."""
    networks = []
    for item in text.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{item.strip()!r} is not an IP address or network") from exc
    return networks


_secret_lock = threading.Lock()
_secrets: dict[Path, str] = {}


def _install_secret(path: Path) -> str:
    """This installation's own random secret, made on first use (readable by us only)."""
    path = path.resolve()
    with _secret_lock:
        if path not in _secrets:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_urlsafe(48))
                # A link fails if the file exists: of two processes starting at once, one
                # secret wins and both use it.
                with contextlib.suppress(FileExistsError):
                    os.link(draft, path)
                draft.unlink()
            secret = path.read_text().strip()
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"{path} holds no usable secret; delete it to make a new one")
            _secrets[path] = secret
        return _secrets[path]


def check_timezone(name: str) -> ZoneInfo:
    """Return the IANA zone called ``name`` or raise ``ValueError``."""
    if not name or name != name.strip() or ".." in name or name.startswith("/"):
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@lru_cache
def get_settings() -> Settings:
    return Settings()
