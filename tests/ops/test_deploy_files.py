"""deploy/ stays true to the code: the example environment names real settings (and
loads as production settings), and the units run commands and options that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatmeter.cli import app
from chatmeter.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def example_environment() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "chatmeter.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_the_example_environment_names_real_settings_and_loads_in_production() -> None:
    env = example_environment()
    fields = {f"CHATMETER_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in env if k.startswith("CHATMETER_")} - fields
    assert not unknown, f"not settings: {sorted(unknown)}"
    values = {k.removeprefix("CHATMETER_").lower(): v for k, v in env.items() if k in fields}
    with pytest.raises(ValueError, match="CHATMETER_SECRET_KEY"):  # until the operator's own
        Settings(_env_file=None, **values)
    settings = Settings(_env_file=None, **(values | {"secret_key": "s" * 48}))
    assert settings.env.value == "production" and settings.payment_gateway == "stripe"


def test_the_units_run_commands_and_options_that_exist() -> None:
    runner = CliRunner()
    for unit in DEPLOY.glob("*.service"):
        for command in re.findall(r"^ExecStart=\S*/chatmeter (.+)$", unit.read_text(), re.M):
            name, *options = command.split()
            shown = runner.invoke(app, [name, "--help"])
            assert shown.exit_code == 0, (unit.name, name, shown.output)
            for option in options:
                if option.startswith("--"):
                    assert option in shown.output, (unit.name, option)
