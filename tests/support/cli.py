"""The operator's CLI, run in-process with a fixed environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from chatmeter.cli import app


class Operator:
    """Runs ``chatmeter`` commands with a fixed environment, on a database with one account."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.runner = CliRunner()

    def invoke(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
        return result

    def run(self, *args: str, code: int = 0) -> str:
        return self.invoke(*args, code=code).output

    def json(self, *args: str) -> Any:
        return json.loads(self.invoke(*args, "--json").stdout)

    def json_failing(self, *args: str) -> Any:
        return json.loads(self.invoke(*args, "--json", code=1).stdout)

    def file(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)
