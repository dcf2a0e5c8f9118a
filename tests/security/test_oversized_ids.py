"""A number no database column can hold, sent where the API takes an id or a cursor.

Both databases keep ids in 64 bits; a larger number used to reach the query and
crash it (SQLite: ``OverflowError``; PostgreSQL: a numeric out of range), a 500
for anyone with a key and a traceback in the CLI. Every integer in every path and
query of the API's own schema is tried, so a new route is covered as it is added.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatmeter.cli import app
from tests.support.api import Caller

TOO_LARGE = (2**63, -(2**63) - 1, 10**30)
INT_ID = 2**31 - 1  # accounts and API keys: INTEGER keys, 32 bits on PostgreSQL
# A valid body for the routes that need one, so that only the number can be wrong.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/holds/{hold_id}/settle"): {"json": {"context": 0, "generation": 0}},
    ("patch", "/api/v1/assistants/{assistant_id}"): {"json": {}},
    ("post", "/api/v1/assistants/{assistant_id}/files"): {
        "files": {"files": ("a.txt", b"some text")}
    },
}


def integer_parameters(schema: dict[str, Any]) -> Iterator[tuple[str, str, str, str, int]]:
    """(method, path template, where, name, maximum) of every integer path or query
    parameter; every one must declare its maximum."""
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                types = {
                    s.get("type")
                    for s in [parameter["schema"], *parameter["schema"].get("anyOf", [])]
                }
                if parameter["in"] in ("path", "query") and "integer" in types:
                    bounded = [parameter["schema"], *parameter["schema"].get("anyOf", [])]
                    (maximum,) = {s["maximum"] for s in bounded if "maximum" in s}
                    yield method, path, parameter["in"], parameter["name"], maximum


def test_an_integer_beyond_64_bits_is_refused_in_every_path_and_query(alice: Caller) -> None:
    bot = alice.new_assistant()
    schema = alice.client.get("/api/v1/openapi.json").json()
    tried = 0
    for method, template, where, name, maximum in integer_parameters(schema):
        # One past the column's own range (32 bits for API keys) and far beyond.
        for number in (maximum + 1, *TOO_LARGE):
            path, query = template, {}
            # the other path parameters: real ones, so that only this number is wrong
            for other in ("assistant_id", "file_id", "conversation_id", "hold_id"):
                value = number if (where, name) == ("path", other) else bot["id"]
                path = path.replace("{" + other + "}", str(value))
            if where == "query":
                query[name] = number
            response = alice.client.request(
                method, path, params=query, **BODIES.get((method, template), {})
            )
            assert response.status_code == 422, (method, path, query, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_input" and name in error["message"]
            tried += 1
    assert tried >= 4 * 15  # every id in a path and the two cursors and the filter


@pytest.mark.parametrize(
    ("command", "maximum"),
    [
        (["tokens", "balance", "--account", "{n}"], INT_ID),
        (["keys", "revoke", "--account", "1", "--key", "{n}"], INT_ID),
        (["invoices", "mark-paid", "--account", "1", "--invoice", "{n}"], 2**63 - 1),
        (["assistants", "delete", "--account", "1", "--assistant", "{n}"], 2**63 - 1),
        (["train", "{n}", "{file}"], 2**63 - 1),
    ],
)
def test_the_cli_refuses_an_id_beyond_its_column_with_a_message(
    db_url: str, tmp_path: Path, command: list[str], maximum: int
) -> None:
    environ = {
        "CHATMETER_DATABASE_URL": db_url,
        "CHATMETER_ENV": "test",
        "CHATMETER_DATA_DIR": str(tmp_path / "var"),
    }
    notes = tmp_path / "notes.txt"
    notes.write_text("Opening hours: 9 to 5.")
    args = [part.replace("{n}", str(maximum + 1)).replace("{file}", str(notes)) for part in command]

    result = CliRunner().invoke(app, args, env=environ)

    assert result.exit_code == 2, result.output + result.stderr
    message = " ".join(result.stderr.replace("│", " ").split())  # out of its box
    assert f"less than or equal to {maximum}" in message
    assert result.exception is None or isinstance(result.exception, SystemExit)
