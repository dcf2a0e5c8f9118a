"""``chatmeter doctor`` against real servers on loopback: what answers passes, what does
not is named with its fix, and nothing waits long (a closed port is refused at once,
and every probe has a short deadline)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatmeter.cli import app
from chatmeter.config import Env, Settings
from chatmeter.context import Context
from chatmeter.db import Database
from chatmeter.ops import doctor
from chatmeter.ops.findings import Status
from tests.notifications.smtp_server import PASSWORD, USERNAME, SmtpServer
from tests.support.llm import SERVER_API_KEY
from tests.support.net import free_port

TIMEOUT = 2.0


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, env=Env.TEST, data_dir=tmp_path / "var", **values)


def probed(settings: Settings) -> dict[str, Any]:
    ctx = Context.from_settings(settings)
    try:
        findings = doctor.examine(ctx, timeout=TIMEOUT, load_models=False)
    finally:
        ctx.close()
    return {f.check: f for f in findings}


def test_a_migrated_database_passes(migrated_url: str, tmp_path: Path) -> None:
    found = probed(settings_for(tmp_path, database_url=migrated_url))
    assert found["database"].status is Status.OK
    assert found["migrations"].status is Status.OK


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_postgresql_server_older_than_keyword_search_needs_is_told_to_upgrade(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert probed(settings_for(tmp_path, database_url=db_url))["database"].status is Status.OK
    monkeypatch.setattr(doctor, "MIN_POSTGRES", 10 * doctor.MIN_POSTGRES)  # as if it were 13
    found = probed(settings_for(tmp_path, database_url=db_url))["database"]
    assert found.status is Status.FAIL
    assert "too old" in found.message and "PostgreSQL 130 or later" in found.fix


def test_a_database_built_without_migrations_is_told_to_migrate(
    db_url: str, tmp_path: Path
) -> None:
    found = probed(settings_for(tmp_path, database_url=db_url))
    assert found["database"].status is Status.OK
    assert found["migrations"].status is Status.FAIL
    assert "chatmeter migrate" in found["migrations"].fix


def test_an_unreachable_database_fails_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/chatmeter"
    found = probed(settings_for(tmp_path, database_url=closed))
    assert found["database"].status is Status.FAIL
    assert "CHATMETER_DATABASE_URL" in found["database"].fix
    assert "migrations" not in found  # nothing to read
    assert time.monotonic() - started < 10 * TIMEOUT


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    found = probed(settings_for(tmp_path, database_url=f"sqlite:///{path}"))
    assert found["database"].status is Status.FAIL
    assert not path.exists()


def test_redis_answering_or_not(redis_url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    Database(db).create_all()
    assert (
        probed(settings_for(tmp_path, database_url=db, redis_url=redis_url))[
            "redis-reachable"
        ].status
        is Status.OK
    )
    closed = f"redis://127.0.0.1:{free_port()}/0"
    finding = probed(settings_for(tmp_path, database_url=db, redis_url=closed))["redis-reachable"]
    assert finding.status is Status.FAIL
    assert "CHATMETER_REDIS_URL" in finding.fix


def smtp_settings(tmp_path: Path, server: SmtpServer, **values: Any) -> Settings:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    Database(db).create_all()
    return settings_for(
        tmp_path,
        database_url=db,
        mailer="smtp",
        smtp_host=server.host,
        smtp_port=server.port,
        **values,
    )


def test_smtp_answering_and_taking_the_login(smtp_server: SmtpServer, tmp_path: Path) -> None:
    settings = smtp_settings(tmp_path, smtp_server, smtp_username=USERNAME, smtp_password=PASSWORD)
    finding = probed(settings)["smtp"]
    assert finding.status is Status.OK, finding
    assert "takes the login" in finding.message
    assert smtp_server.inbox.messages == []  # nothing was sent


def test_smtp_refusing_the_login(smtp_server: SmtpServer, tmp_path: Path) -> None:
    settings = smtp_settings(tmp_path, smtp_server, smtp_username=USERNAME, smtp_password="wrong")
    finding = probed(settings)["smtp"]
    assert finding.status is Status.FAIL
    assert "CHATMETER_SMTP_PASSWORD" in finding.fix


def test_smtp_not_answering(tmp_path: Path) -> None:
    stopped = SmtpServer()  # its port refuses connections: never started
    finding = probed(smtp_settings(tmp_path, stopped))["smtp"]
    assert finding.status is Status.FAIL
    assert "CHATMETER_SMTP_HOST" in finding.fix


# --- the command ---------------------------------------------------------------------------


def production_env(database_url: str, server: SmtpServer, redis_url: str) -> dict[str, str]:
    return {
        "CHATMETER_ENV": "production",
        "CHATMETER_SECRET_KEY": "k" * 48,
        "CHATMETER_BASE_URL": "https://chat.example.com",
        "CHATMETER_DATABASE_URL": database_url,
        "CHATMETER_MAILER": "smtp",
        "CHATMETER_SMTP_HOST": server.host,
        "CHATMETER_SMTP_PORT": str(server.port),
        "CHATMETER_SMTP_USERNAME": USERNAME,
        "CHATMETER_SMTP_PASSWORD": PASSWORD,
        "CHATMETER_TRUSTED_PROXIES": "127.0.0.1",
        "CHATMETER_REDIS_URL": redis_url,
    }


def run(env: dict[str, str], *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(
        app, ["doctor", "--json", "--timeout", str(TIMEOUT), *args], env=env
    )
    return result.exit_code, json.loads(result.stdout)


def test_doctor_passes_a_production_configuration(
    migrated_url: str, smtp_server: SmtpServer, redis_url: str
) -> None:
    code, report = run(production_env(migrated_url, smtp_server, redis_url), "--no-models")
    assert code == 0, report
    assert report["ok"] is True
    failing = [c for c in report["checks"] if c["status"] == "fail"]
    assert failing == []
    assert {c["check"] for c in report["checks"]} >= {
        "environment",
        "database",
        "migrations",
        "redis-reachable",
        "smtp",
        "trusted-proxies",
        "stripe",
        "models",
    }


def test_doctor_exits_1_and_says_what_to_fix(
    migrated_url: str, redis_url: str, tmp_path: Path
) -> None:
    stopped = SmtpServer()
    env = production_env(migrated_url, stopped, redis_url) | {
        "CHATMETER_PAYMENT_GATEWAY": "stripe",
        "CHATMETER_STRIPE_SECRET_KEY": "sk_live_" + "a" * 24,
        "CHATMETER_STRIPE_PUBLISHABLE_KEY": "pk_test_" + "b" * 24,
        "CHATMETER_STRIPE_WEBHOOK_SECRET": "whsec_" + "c" * 24,
    }
    code, report = run(env, "--no-models")
    assert code == 1
    failing = {c["check"]: c for c in report["checks"] if c["status"] == "fail"}
    assert set(failing) == {"smtp", "stripe"}
    assert all(c["fix"] for c in failing.values())


def test_doctor_reports_settings_that_do_not_load() -> None:
    code, report = run({"CHATMETER_ENV": "production", "CHATMETER_SECRET_KEY": "short"})
    assert code == 1
    assert [c["check"] for c in report["checks"]] == ["settings"]
    assert "CHATMETER_SECRET_KEY" in report["checks"][0]["message"]


@pytest.mark.model
def test_doctor_loads_the_models(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, models=["local"])
    ctx = Context.from_settings(settings)
    try:
        finding = doctor.models(ctx, TIMEOUT)
    finally:
        ctx.close()
    assert finding.status is Status.OK, finding


def models_finding(settings: Settings) -> Any:
    ctx = Context.from_settings(settings)
    try:
        return doctor.models(ctx, TIMEOUT)
    finally:
        ctx.close()


def test_doctor_names_a_tokenizer_for_a_model_that_is_not_listed(tmp_path: Path) -> None:
    finding = models_finding(
        settings_for(
            tmp_path,
            models=["openai:smollm2", "openai:gemma"],
            openai_tokenizers={"smollm2": "tiktoken:o200k_base", "gemma3": "tiktoken"},
        )
    )
    assert finding.status is Status.FAIL
    assert "CHATMETER_OPENAI_TOKENIZERS names 'gemma3'" in finding.message
    assert "openai:smollm2, openai:gemma" in finding.message
    assert "CHATMETER_OPENAI_TOKENIZERS" in finding.fix


def test_doctor_refuses_one_vocabulary_for_two_models_without_their_own(tmp_path: Path) -> None:
    finding = models_finding(
        settings_for(
            tmp_path,
            models=["openai:smollm2", "openai:gemma", "openai:qwen"],
            openai_tokenizer="tiktoken:o200k_base",
            openai_tokenizers={"qwen": "tiktoken:cl100k_base"},
        )
    )
    assert finding.status is Status.FAIL
    assert "one vocabulary" in finding.message
    assert "openai:smollm2, openai:gemma" in finding.message


def test_doctor_says_what_counts_each_server_model(
    tmp_path: Path, llama_server: str, gguf_path: Path
) -> None:
    finding = models_finding(
        settings_for(
            tmp_path,
            models=["openai:smollm2", "openai:gemma"],
            openai_base_url=llama_server,
            openai_api_key=SERVER_API_KEY,
            openai_tokenizers={"smollm2": f"gguf:{gguf_path}", "gemma": "tiktoken:o200k_base"},
        )
    )
    assert finding.status is Status.OK, finding
    assert f"openai:smollm2 (counted with gguf:{gguf_path.resolve()})" in finding.message
    assert "openai:gemma (counted with tiktoken:o200k_base)" in finding.message


def test_a_model_server_that_does_not_answer_fails(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        models=["openai:gpt-4o-mini"],
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
    )
    problem = doctor._model_server(settings, TIMEOUT)
    assert problem is not None
