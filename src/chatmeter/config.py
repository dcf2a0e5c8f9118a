"""One validated Settings object, read from ``CHATMETER_*`` environment variables.

Every field here is documented in README.md; ``tests/test_docs.py`` fails when
the two drift apart.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Env(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


DEFAULT_SECRET = "change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATMETER_", extra="ignore")

    env: Env = Env.DEVELOPMENT
    database_url: str = "sqlite:///./var/chatmeter.db"
    data_dir: Path = Path("./var")
    secret_key: str = DEFAULT_SECRET
    base_url: str = "http://127.0.0.1:8000"
    now: dt.datetime | None = None

    package_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = 5000
    package_price: Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=2)] = Decimal("9.00")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    free_tokens: Annotated[int, Field(ge=0, le=100_000_000)] = 0
    default_timezone: str = "UTC"

    payment_gateway: Literal["manual"] = "manual"
    payment_auto_approve: bool | None = None
    renewal_retry_hours: Annotated[int, Field(ge=1, le=24 * 7)] = 24
    renewal_max_attempts: Annotated[int, Field(ge=1, le=30)] = 4

    hold_ttl_seconds: Annotated[int, Field(ge=1, le=86_400)] = 120

    mailer: Literal["file", "smtp"] = "file"
    mail_from: str = "Chatmeter <no-reply@chatmeter.localhost>"
    mail_dir: Path | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout: Annotated[float, Field(gt=0, le=30)] = 10.0

    worker: Literal["inprocess", "none"] = "inprocess"
    worker_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_body_bytes: Annotated[int, Field(ge=1024, le=512 * 1024 * 1024)] = 1_048_576
    max_upload_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024 * 1024)] = 20 * 1024 * 1024

    demo: bool | None = None

    redis_url: str | None = None
    # Sign-ups in the panel (each costs an argon2 hash): per client address, and in all.
    sign_up_rate_per_address: str = "10/hour;50/day"
    sign_up_rate: str = "60/minute;1000/hour"
    chat_max_message_chars: Annotated[int, Field(ge=10, le=100_000)] = 2000
    chat_visitor_rate: str = "20/minute"
    chat_assistant_rate: str = "600/minute"
    chat_history_tokens: Annotated[int, Field(ge=0, le=100_000)] = 300
    chat_hold_seconds: Annotated[int, Field(ge=10, le=3600)] = 300

    llm_context_window: Annotated[int, Field(ge=512, le=1_000_000)] = 2048
    llm_threads: Annotated[int, Field(ge=1, le=256)] = 1
    llm_batch_threads: Annotated[int, Field(ge=1, le=256)] = 2
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    openai_tokenizer: str | None = None
    openai_context_window: Annotated[int, Field(ge=512, le=10_000_000)] = 8192
    rate_card: dict[str, tuple[Decimal, Decimal]] = {}

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        check_timezone(value)
        return value

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
        if self.env is Env.PRODUCTION:
            if self.now is not None:
                raise ValueError("CHATMETER_NOW is refused when CHATMETER_ENV=production")
            if self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                raise ValueError(
                    "CHATMETER_SECRET_KEY must be set to a random value of 32+ characters "
                    "in production"
                )
        return self

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
    def mail_path(self) -> Path:
        return self.mail_dir or self.data_dir / "mail"


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
