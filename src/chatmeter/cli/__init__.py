"""The operator's command line: ``chatmeter --help``.

Every command that prints data also takes ``--json``. Errors print a
readable message and exit with status 1 (2 for wrong usage). One module per
area; importing them registers their commands on ``app``.
"""

from __future__ import annotations

from importlib import import_module

from chatmeter.cli.base import app

# Imported in the order ``chatmeter --help`` lists their commands.
for _area in (
    "running",
    "doctor",
    "assistants",
    "answers",
    "money",
    "invoicing",
    "forecast",
    "surges",
    "webhooks",
    "keys",
    "operations",
):
    import_module(f"chatmeter.cli.{_area}")


def main() -> None:
    app(prog_name="chatmeter")


__all__ = ["app", "main"]
