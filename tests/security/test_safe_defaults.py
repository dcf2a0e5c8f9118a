"""A forgotten setting never opens a hole (issue #8, finding 7).

Reproduced on the old code: without ``CHATMETER_ENV`` the server took the
development defaults wherever it listened: it signed sessions with the
published secret ``change-me`` (anyone could forge one), honoured
``CHATMETER_NOW``, approved payments without money and created the demo account
with a known password.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from chatmeter.cli import app
from chatmeter.config import Env, Settings

GOOD_SECRET = "k" * 48


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_without_an_environment_it_is_production_and_wants_a_secret() -> None:
    with pytest.raises(ValidationError, match="CHATMETER_SECRET_KEY must be a random value"):
        settings()
    for published in ("change-me", "short"):
        with pytest.raises(ValidationError, match="CHATMETER_SECRET_KEY"):
            settings(secret_key=published)
    production = settings(secret_key=GOOD_SECRET)
    assert production.env is Env.PRODUCTION
    assert not production.auto_approve_payments and not production.create_demo
    assert production.signing_key() == GOOD_SECRET


@pytest.mark.parametrize(
    ("setting", "value"),
    [("now", "2026-11-15T12:00:00Z"), ("payment_auto_approve", True), ("demo", True)],
)
def test_production_refuses_the_development_conveniences(setting: str, value: object) -> None:
    with pytest.raises(ValidationError, match="is refused when CHATMETER_ENV=production"):
        settings(secret_key=GOOD_SECRET, **{setting: value})


def test_development_signs_with_a_secret_of_its_own_installation(tmp_path: Path) -> None:
    one = settings(env=Env.DEVELOPMENT, data_dir=tmp_path / "one")
    other = settings(env=Env.DEVELOPMENT, data_dir=tmp_path / "two")
    key = one.signing_key()
    assert len(key) >= 32 and key not in ("change-me", "")
    assert other.signing_key() != key
    # Kept: sessions survive a restart; readable by the server's user only.
    again = settings(env=Env.DEVELOPMENT, data_dir=tmp_path / "one")
    assert again.signing_key() == key
    secret_file = tmp_path / "one" / "secret_key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # The published default is never used, even when set explicitly.
    assert (
        settings(
            env=Env.DEVELOPMENT, data_dir=tmp_path / "one", secret_key="change-me"
        ).signing_key()
        == key
    )


def serve(*args: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATMETER_")}
    result = CliRunner().invoke(app, ["serve", "--no-migrate", *args], env=clean | env)
    return result.exit_code, result.output + result.stderr


def test_serve_without_settings_refuses_to_start(tmp_path: Path) -> None:
    code, output = serve(CHATMETER_DATA_DIR=str(tmp_path))
    assert code == 1 and "CHATMETER_SECRET_KEY" in output


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "chatmeter.example.com"])
def test_development_serves_this_machine_only(tmp_path: Path, host: str) -> None:
    code, output = serve(
        "--host", host, CHATMETER_ENV="development", CHATMETER_DATA_DIR=str(tmp_path)
    )
    assert code == 1
    assert "serves only this machine" in output and "CHATMETER_ENV=production" in output


def test_a_listed_model_whose_tokens_cannot_be_counted_stops_the_server(tmp_path: Path) -> None:
    code, output = serve(
        CHATMETER_ENV="development",
        CHATMETER_DATA_DIR=str(tmp_path),
        CHATMETER_MODELS='["local", "openai:fake-model"]',
    )
    assert code == 1 and "openai:fake-model" in output and "CHATMETER_OPENAI_TOKENIZER" in output


@pytest.mark.parametrize("tokenizer", ["gguf:/models/smollm2.gguf", "tiktoken:o200k_base"])
def test_one_vocabulary_for_two_server_models_stops_the_server(
    tmp_path: Path, tokenizer: str
) -> None:
    # One of the two would be charged in the other's tokens; refused before loading anything.
    code, output = serve(
        CHATMETER_ENV="development",
        CHATMETER_DATA_DIR=str(tmp_path),
        CHATMETER_MODELS='["local", "openai:smollm2", "openai:gemma-3-270m"]',
        CHATMETER_OPENAI_TOKENIZER=tokenizer,
    )
    assert code == 1, output
    assert "one vocabulary" in output and "openai:smollm2, openai:gemma-3-270m" in output


def test_a_tokenizer_for_a_model_that_is_not_listed_stops_the_server(tmp_path: Path) -> None:
    # A typo ("gemma3" for "gemma-3-270m") would leave gemma counted with the default.
    code, output = serve(
        CHATMETER_ENV="development",
        CHATMETER_DATA_DIR=str(tmp_path),
        CHATMETER_MODELS='["local", "openai:smollm2", "openai:gemma-3-270m"]',
        CHATMETER_OPENAI_TOKENIZERS='{"smollm2": "tiktoken:o200k_base", "gemma3": "tiktoken"}',
    )
    assert code == 1, output
    assert "CHATMETER_OPENAI_TOKENIZERS names 'gemma3'" in output
    assert "openai:smollm2, openai:gemma-3-270m" in output
