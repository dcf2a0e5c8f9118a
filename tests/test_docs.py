"""The README documents every setting and every CLI command with its options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from chatmeter.cli import app
from chatmeter.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()
UNDOCUMENTED_OPTIONS = {"--json", "--help"}


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(CHATMETER_[A-Z_]+)`", README))
    settings = {f"CHATMETER_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from README"
    test_only = {
        "CHATMETER_TEST_POSTGRES_URL",
        "CHATMETER_TEST_REQUIRE_POSTGRES",
        "CHATMETER_TEST_REDIS_URL",
        "CHATMETER_TEST_REQUIRE_REDIS",
        "CHATMETER_TEST_SCREENSHOTS",
    }
    assert documented - settings - test_only == set(), "README documents unknown settings"


def commands(group: Any, prefix: str = "chatmeter") -> dict[str, Any]:
    """Every leaf command by its full path (typer vendors its own click)."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            found |= commands(command, path)
        else:
            found[path] = command
    return found


def test_every_cli_command_and_option_is_documented() -> None:
    rows = {line for line in README.splitlines() if line.startswith("| `chatmeter ")}
    root = typer.main.get_command(app)
    for path, command in commands(root).items():
        row = next(
            (r for r in rows if r.startswith(f"| `{path} ") or r.startswith(f"| `{path}`")), None
        )
        assert row is not None, f"{path} is not documented in README"
        for param in command.params:
            for option in param.opts:
                if option.startswith("--") and option not in UNDOCUMENTED_OPTIONS:
                    names = {option} | {o for o in param.secondary_opts}
                    assert any(n in row for n in names), f"{path}: {option} is not documented"


def test_every_webhook_event_is_documented() -> None:
    """The README's table of events names every event a receiver can get, and no other."""
    from chatmeter.webhooks.events import EventType

    section = README.split("\n## Webhooks\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {line.split("`")[1] for line in table}
    assert documented == {str(event) for event in EventType}
