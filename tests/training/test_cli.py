"""Assistants and training from the operator's CLI, on SQLite and PostgreSQL:
``chatmeter assistants create|list|update|rotate-key|delete`` and
``chatmeter train ASSISTANT FILE...`` with real files, progress and a line per file."""

from __future__ import annotations

import pytest

from chatmeter.assistants import service as assistants
from chatmeter.db import Database
from tests.knowledge import files
from tests.support.cli import Operator

TEXT = b"Our shop opens at nine and closes at six.\n\nWe are closed on Sundays.\n"


def resolve(db_url: str, public_key: str) -> int | None:
    database = Database(db_url)
    try:
        with database.read() as session:
            found = assistants.by_public_key(session, public_key=public_key)
            return found.id if found else None
    finally:
        database.dispose()


@pytest.mark.model
def test_an_assistant_is_created_listed_changed_rekeyed_and_deleted(
    operator: Operator, db_url: str
) -> None:
    created = operator.json(
        "assistants",
        "create",
        "--account",
        "1",
        "--name",
        "Shop helper",
        "--instructions",
        "Be brief.",
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--temperature",
        "0.5",
        "--max-tokens",
        "200",
        "--passages",
        "4",
        "--context-budget",
        "600",
        "--welcome-message",
        "Hello!",
        "--domain",
        "https://Example.com/",
        "--domain",
        "*.example.com",
    )
    assistant = str(created["id"])
    assert {
        k: created[k]
        for k in (
            "name",
            "instructions",
            "provider",
            "model",
            "temperature",
            "max_tokens",
            "passages",
            "context_budget",
            "welcome_message",
            "allowed_domains",
        )
    } == {
        "name": "Shop helper",
        "instructions": "Be brief.",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "temperature": 0.5,
        "max_tokens": 200,
        "passages": 4,
        "context_budget": 600,
        "welcome_message": "Hello!",
        "allowed_domains": ["example.com", "*.example.com"],
    }
    assert resolve(db_url, created["public_key"]) == created["id"]
    assert operator.json("assistants", "list", "--account", "1") == [created]
    listed = operator.run("assistants", "list", "--account", "1")
    assert "Shop helper" in listed and created["public_key"] in listed
    assert "example.com, *.example.com" in listed

    updated = operator.json(
        "assistants",
        "update",
        "--account",
        "1",
        "--assistant",
        assistant,
        "--name",
        "Renamed",
        "--temperature",
        "1",
        "--domain",
        "shop.example",
    )
    assert (updated["name"], updated["temperature"], updated["allowed_domains"]) == (
        "Renamed",
        1.0,
        ["shop.example"],
    )
    assert (updated["max_tokens"], updated["model"], updated["public_key"]) == (
        200,
        "gpt-4o-mini",
        created["public_key"],
    )

    rotated = operator.json("assistants", "rotate-key", "--account", "1", "--assistant", assistant)
    assert rotated["public_key"] != created["public_key"]
    assert resolve(db_url, created["public_key"]) is None
    assert resolve(db_url, rotated["public_key"]) == created["id"]

    operator.file("hours.txt", TEXT)
    operator.run("train", assistant, str(operator.folder / "hours.txt"))
    assert f"assistant {assistant} deleted" in operator.run(
        "assistants", "delete", "--account", "1", "--assistant", assistant
    )
    assert operator.json("assistants", "list", "--account", "1") == []
    assert "no assistants" in operator.run("assistants", "list", "--account", "1")
    assert resolve(db_url, rotated["public_key"]) is None
    assert "no such assistant" in operator.run(
        "assistants", "delete", "--account", "1", "--assistant", assistant, code=1
    )


def test_the_widget_title_colour_and_position_can_be_set_from_the_cli(operator: Operator) -> None:
    created = operator.json(
        "assistants",
        "create",
        "--account",
        "1",
        "--name",
        "Helper",
        "--widget-title",
        "Ask us",
        "--widget-color",
        "#112233",
        "--widget-position",
        "left",
    )
    assert (created["widget_title"], created["widget_color"], created["widget_position"]) == (
        "Ask us",
        "#112233",
        "left",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--temperature", "2.5"), "temperature"),
        (("--max-tokens", "5"), "max_tokens"),
        (("--passages", "0"), "passages"),
        (("--context-budget", "10"), "context_budget"),
        (("--provider", "anthropic"), "provider"),
        (("--domain", "not a domain"), "not a domain"),
        (("--name", "   "), "blank"),
    ],
)
def test_bad_settings_give_a_message_and_change_nothing(
    operator: Operator, args: tuple[str, ...], message: str
) -> None:
    named = ("--name", "Helper") if "--name" not in args else ()
    output = operator.run("assistants", "create", "--account", "1", *named, *args, code=1)
    assert message in output and "Traceback" not in output
    assert operator.json("assistants", "list", "--account", "1") == []
    operator.run("assistants", "create", "--account", "1", "--name", "Helper")
    before = operator.json("assistants", "list", "--account", "1")
    output = operator.run(
        "assistants", "update", "--account", "1", "--assistant", "1", *args, code=1
    )
    assert message in output
    assert operator.json("assistants", "list", "--account", "1") == before


def test_another_accounts_assistant_is_not_found(operator: Operator) -> None:
    operator.run("assistants", "create", "--account", "1", "--name", "Mine")
    operator.json("accounts", "create", "--email", "other@example.com")
    for command in (("update", "--name", "Taken"), ("rotate-key",), ("delete",)):
        output = operator.run(
            "assistants", command[0], "--account", "2", "--assistant", "1", *command[1:], code=1
        )
        assert "no such assistant" in output
    assert [a["name"] for a in operator.json("assistants", "list", "--account", "1")] == ["Mine"]


@pytest.mark.model
def test_train_reads_every_file_and_reports_each(operator: Operator) -> None:
    assistant = str(
        operator.json("assistants", "create", "--account", "1", "--name", "Helper")["id"]
    )
    paths = [
        operator.file("hours.txt", TEXT),
        operator.file(
            "handbook.pdf",
            files.pdf(
                [
                    [("Billing", ["Tokens come in packages."])],
                    [(None, ["Invoices go out monthly."])],
                ]
            ),
        ),
        operator.file("handbook.docx", files.word()),
    ]
    result = operator.invoke("train", assistant, *paths)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("hours.txt: ready, 1 pages, 1 passages, ")
    assert lines[1].startswith("handbook.pdf: ready, 2 pages, 2 passages, ")
    assert lines[2].startswith("handbook.docx: ready, 1 pages, ")
    assert all(line.endswith(" tokens") for line in lines)
    for name in ("hours.txt", "handbook.pdf", "handbook.docx"):
        assert name in result.stderr  # each file's progress bar, labelled with its name

    again = operator.json("train", assistant, operator.file("copy-of-hours.txt", TEXT))
    assert [(f["filename"], f["status"], f["duplicate"]) for f in again] == [
        ("hours.txt", "ready", True)
    ]
    assert "already trained: same content" in operator.run(
        "train", assistant, operator.file("hours-again.txt", TEXT)
    )


@pytest.mark.model
def test_a_file_that_fails_is_explained_and_the_exit_code_is_1(operator: Operator) -> None:
    assistant = str(
        operator.json("assistants", "create", "--account", "1", "--name", "Helper")["id"]
    )
    result = operator.invoke(
        "train",
        assistant,
        operator.file("scan.pdf", files.image_only_pdf()),
        operator.file("hours.txt", TEXT),
        operator.file("empty.txt", b""),
        code=1,
    )
    assert "scan.pdf: failed - This PDF has no text layer" in result.stdout
    assert "hours.txt: ready" in result.stdout  # the good file is trained regardless
    assert "empty.txt" in result.stderr and "is empty" in result.stderr
    report = operator.json_failing("train", assistant, operator.file("photo.pdf", files.png()))
    assert [(f["filename"], f["status"], f["error"]["code"]) for f in report] == [
        ("photo.pdf", "failed", "unsupported")
    ]
    assert "PNG image" in report[0]["error"]["message"]


@pytest.mark.model
def test_train_json_explains_every_failure_in_the_same_shape(operator: Operator) -> None:
    """A failure found at upload (empty file) reads like one found while processing."""
    assistant = str(
        operator.json("assistants", "create", "--account", "1", "--name", "Helper")["id"]
    )
    report = operator.json_failing(
        "train", assistant, operator.file("photo.pdf", files.png()), operator.file("empty.txt", b"")
    )
    assert [(f["filename"], f["status"]) for f in report] == [
        ("photo.pdf", "failed"),
        ("empty.txt", "failed"),
    ]
    for failure in report:
        assert isinstance(failure["error"], dict), failure
        assert failure["error"]["code"] and failure["error"]["message"], failure


def test_train_refuses_an_unknown_assistant_and_a_missing_file(operator: Operator) -> None:
    path = operator.file("hours.txt", TEXT)
    assert "no such assistant" in operator.run("train", "99", path, code=1)
    operator.run("assistants", "create", "--account", "1", "--name", "Helper")
    missing = operator.run("train", "1", str(operator.folder / "nope.txt"), code=2)
    assert "nope.txt" in missing


def test_the_widgets_texts_and_theme_can_be_set_one_text_at_a_time(operator: Operator) -> None:
    operator.run("assistants", "create", "--account", "1", "--name", "Helper")
    update = ("assistants", "update", "--account", "1", "--assistant", "1")

    first = operator.json(*update, "--widget-text", "subtitle=Ask about the shop")
    second = operator.json(
        *update, "--widget-text", "placeholder=Your question", "--widget-theme", "dark"
    )
    cleared = operator.json(*update, "--widget-text", "subtitle=")

    assert first["widget_texts"] == {"subtitle": "Ask about the shop"}
    assert second["widget_texts"] == {
        "subtitle": "Ask about the shop",
        "placeholder": "Your question",
    }
    assert second["widget_theme"] == "dark"
    assert cleared["widget_texts"] == {"placeholder": "Your question"}
    for bad, says in (
        (("--widget-text", "subtitle"), "KEY=TEXT"),
        (("--widget-text", "greeting=Hi"), "not one of the widget's texts"),
        (("--widget-theme", "sepia"), "theme"),
    ):
        assert says in operator.run(*update, *bad, code=1)
    assert operator.json("assistants", "list", "--account", "1")[0]["widget_texts"] == {
        "placeholder": "Your question"
    }


@pytest.mark.model
def test_a_files_title_for_visitors_is_set_and_given_back(operator: Operator) -> None:
    operator.run("assistants", "create", "--account", "1", "--name", "Helper")
    (trained,) = operator.json("train", "1", operator.file("opening-hours.txt", TEXT))
    name = ("assistants", "file-title", "--account", "1", "--assistant", "1")

    named = operator.json(*name, "--file", str(trained["id"]), "--title", "When we are open")
    assert (named["title"], named["source_title"]) == ("When we are open", "When we are open")
    assert "shown to visitors as 'Opening hours'" in operator.run(
        *name, "--file", str(trained["id"]), "--title", ""
    )
    assert "no such file" in operator.run(*name, "--file", "999", "--title", "X", code=1)
    assert "at most 200" in operator.run(
        *name, "--file", str(trained["id"]), "--title", "x" * 201, code=1
    )
