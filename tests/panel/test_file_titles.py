"""The training page names each file as visitors see it, and its title can be changed: by
its own account only, with a readable refusal for a bad title that changes nothing."""

from __future__ import annotations

import html
import re

import pytest

from chatmeter.context import Context
from chatmeter.training import service as training
from chatmeter.training.models import TrainingFile
from tests.panel.test_assistant_pages import create, files_json, upload
from tests.support.panel import Panel, new_panel

pytestmark = pytest.mark.model  # trains with the embedder

HOURS = b"Our shop opens at nine and closes at six.\n\nWe are closed on Sundays.\n"


def trained_file(ctx: Context, panel: Panel) -> tuple[int, int]:
    panel.sign_up()
    assistant = create(panel)
    assert upload(panel, assistant, ("opening-hours_v2.txt", HOURS)).status_code == 201
    assert training.process_queue(ctx) == {"ready": 1, "failed": 0}
    (file,) = files_json(panel, assistant)["files"]
    return assistant, file["id"]


def title_of(ctx: Context, file_id: int) -> str:
    with ctx.db.read() as session:
        file = session.get(TrainingFile, file_id)
        assert file is not None
        return file.title


def test_the_training_page_shows_and_renames_the_title_visitors_see(
    ctx: Context, panel: Panel
) -> None:
    assistant, file_id = trained_file(ctx, panel)
    page = f"/panel/assistants/{assistant}/files/{file_id}/title"

    listed = files_json(panel, assistant)["files"][0]
    assert listed["source_title"] == "Opening hours v2"
    training_page = panel.client.get(f"/panel/assistants/{assistant}/training").text
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", training_page)).split())
    assert "Shown to visitors as “ Opening hours v2 ” · Rename" in words
    assert f'href="{page}"' in training_page

    saved = panel.post(page, {"title": "When we are open"})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/panel/assistants/{assistant}/training?done=titled"
    assert title_of(ctx, file_id) == "When we are open"
    assert files_json(panel, assistant)["files"][0]["source_title"] == "When we are open"
    form = html.unescape(panel.client.get(page).text)
    assert 'value="When we are open"' in form and "“Opening hours v2”" in form

    assert panel.post(page, {"title": ""}).status_code == 303
    assert title_of(ctx, file_id) == ""


@pytest.mark.parametrize(
    ("title", "says"),
    [("x" * 201, "at most 200 characters"), ("a\x00b", "must not contain the NUL character")],
)
def test_a_bad_title_is_refused_on_the_page_and_changes_nothing(
    ctx: Context, panel: Panel, title: str, says: str
) -> None:
    assistant, file_id = trained_file(ctx, panel)

    refused = panel.post(f"/panel/assistants/{assistant}/files/{file_id}/title", {"title": title})

    assert refused.status_code == 422
    assert says in html.unescape(refused.text)
    assert title_of(ctx, file_id) == ""


def test_another_account_cannot_see_or_rename_a_file(ctx: Context, panel: Panel) -> None:
    assistant, file_id = trained_file(ctx, panel)
    alice = new_panel(ctx)
    alice.sign_up("alice@example.com")
    hers = create(alice, name="Alice's bot")
    token = alice.csrf("/panel/assistants/new")

    for owner in (assistant, hers):
        path = f"/panel/assistants/{owner}/files/{file_id}/title"
        assert alice.client.get(path).status_code == 404, path
        posted = alice.client.post(path, data={"csrf_token": token, "title": "Mine"})
        assert posted.status_code == 404, path
    assert title_of(ctx, file_id) == ""
    # Without its CSRF token the owner's own form changes nothing either.
    forged = panel.client.post(
        f"/panel/assistants/{assistant}/files/{file_id}/title", data={"title": "Forged"}
    )
    assert forged.status_code == 403
    assert title_of(ctx, file_id) == ""
