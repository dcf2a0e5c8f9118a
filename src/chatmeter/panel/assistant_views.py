"""What the assistants pages share: finding the viewer's assistant, its status, file rows.

Every assistant page looks the assistant up through ``owned_assistant``, which
answers ``None`` for another account's id exactly as for one that never
existed, so the 404 page is all anyone learns about assistants not theirs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.assistants import service as assistants
from chatmeter.assistants.models import Assistant
from chatmeter.billing.summary import is_active
from chatmeter.chat.models import Conversation
from chatmeter.errors import NotFound
from chatmeter.formatting import plural
from chatmeter.ledger.models import Balance
from chatmeter.panel.contrast import text_on
from chatmeter.panel.deps import NoSuchPage, Viewer, ViewerDep, ctx_of
from chatmeter.panel.figures import had_tokens
from chatmeter.panel.rendering import render
from chatmeter.training.models import FileStatus, TrainingFile
from chatmeter.training.titles import shown_title

# Test chats are real conversations; this ``visitor`` marks the ones held in the panel.
TEST_VISITOR = "panel:test"

TABS = [
    ("settings", "Settings", ""),
    ("training", "Training", "/training"),
    ("test", "Test chat", "/test"),
    ("embed", "Embed", "/embed"),
    ("conversations", "Conversations", "/conversations"),
    ("answers", "Answers", "/answers"),
]

PILLS: dict[str, str] = {FileStatus.READY: "pill-ok", FileStatus.FAILED: "pill-off"}
STATUS = {
    "hidden": ("Hidden: out of tokens", "pill-off"),
    "no-tokens": ("Hidden: no tokens yet", "pill-wait"),
    "training": ("Training", "pill-wait"),
    "ready": ("Ready", "pill-ok"),
    "no-files": ("No files", "pill-wait"),
}


def parse_id(raw: str) -> int | None:
    """A database id from a URL, or None for anything that cannot be one."""
    return int(raw) if raw.isdigit() and 0 < len(raw) < 19 else None


def owned_assistant(session: Session, viewer: Viewer, raw_id: str) -> Assistant | None:
    """The viewer's account's assistant with this id; None also for another account's."""
    assistant_id = parse_id(raw_id)
    if assistant_id is None:
        return None
    try:
        return assistants.get_assistant(
            session, account_id=viewer.account_id, assistant_id=assistant_id
        )
    except NotFound:
        return None


def viewers_assistant(request: Request, assistant_id: str, viewer: ViewerDep) -> dict[str, Any]:
    """The viewer's assistant named by the address, as its pages show it, with its status
    and file counts; the "not found" page for an id that is not theirs (``NoSuchPage``)."""
    with ctx_of(request).db.read() as session:
        assistant = owned_assistant(session, viewer, assistant_id)
        if assistant is None:
            raise NoSuchPage
        balance = session.get(Balance, viewer.account_id)
        active = balance is not None and is_active(balance)
        counts = file_counts(session, account_id=viewer.account_id, assistant_id=assistant.id).get(
            assistant.id, {}
        )
        tokens_before = had_tokens(session, account_id=viewer.account_id)
        status = status_of(active=active, counts=counts, had_tokens=tokens_before)
        bot = bot_dict(assistant) | {"status": status}
        bot["files"] = counts
    request.state.bot = bot
    return bot


def bot_of(request: Request) -> dict[str, Any]:
    """The assistant of a refused form's page: ``BotDep`` found it before the form was read."""
    bot: dict[str, Any] = request.state.bot
    return bot


BotDep = Annotated[dict[str, Any], Depends(viewers_assistant)]


def assistant_page(
    request: Request,
    viewer: Viewer,
    name: str,
    *,
    bot: dict[str, Any],
    tab: str,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """One tab of an assistant's pages, under the sidebar's "Assistants"."""
    return render(
        request,
        name,
        viewer=viewer,
        status=status,
        active_nav="assistants",
        bot=bot,
        tab=tab,
        tabs=TABS,
        **context,
    )


def bot_dict(assistant: Assistant) -> dict[str, Any]:
    """The assistant as its pages show it (the widget title as stored, maybe empty)."""
    return assistants.assistant_dict(assistant) | {"own_title": assistant.widget_title}


# --- status and figures ---------------------------------------------------------


def file_counts(
    session: Session, *, account_id: int, assistant_id: int | None = None
) -> dict[int, dict[str, int]]:
    """Training files per assistant (all of the account's, or one) and status."""
    counts: dict[int, dict[str, int]] = {}
    query = select(TrainingFile.assistant_id, TrainingFile.status, func.count()).where(
        TrainingFile.account_id == account_id
    )
    if assistant_id is not None:
        query = query.where(TrainingFile.assistant_id == assistant_id)
    rows = session.execute(query.group_by(TrainingFile.assistant_id, TrainingFile.status))
    for assistant_id, status, count in rows:
        counts.setdefault(assistant_id, {})[status] = int(count)
    return counts


def conversation_figures(session: Session, *, account_id: int) -> dict[int, tuple[int, int]]:
    """(conversations, tokens spent) per assistant, test chats included: they cost the same."""
    rows = session.execute(
        select(
            Conversation.assistant_id,
            func.count(),
            func.coalesce(
                func.sum(Conversation.context_tokens + Conversation.generation_tokens), 0
            ),
        )
        .where(Conversation.account_id == account_id)
        .group_by(Conversation.assistant_id)
    )
    return {assistant_id: (int(count), int(tokens)) for assistant_id, count, tokens in rows}


def status_of(*, active: bool, counts: dict[str, int], had_tokens: bool = True) -> dict[str, str]:
    """Whether visitors can use the assistant and, if so, what it knows. An account that
    never had tokens has not run out of them: its assistants wait, without alarm."""
    if not active:
        key = "hidden" if had_tokens else "no-tokens"
    elif counts.get(FileStatus.QUEUED, 0) + counts.get(FileStatus.PROCESSING, 0):
        key = "training"
    elif counts.get(FileStatus.READY, 0):
        key = "ready"
    else:
        key = "no-files"
    label, pill = STATUS[key]
    return {"key": key, "label": label, "pill": pill}


# --- training files as rows -------------------------------------------------------


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size:,} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f}".removesuffix(".0") + " KB"
    return f"{size / 1024 / 1024:.1f}".removesuffix(".0") + " MB"


def kind_label(file: TrainingFile) -> str:
    """A short badge for the file's type: what it turned out to be, else its extension."""
    if file.format:
        return {"markdown": "MD", "docx": "DOCX"}.get(file.format, file.format.upper())[:4]
    _, dot, extension = file.filename.rpartition(".")
    return extension.upper()[:4] if dot and extension.isalnum() else "FILE"


def file_row(file: TrainingFile) -> dict[str, Any]:
    """A training file as the page and ``files.json`` show it; the texts are made here only."""
    size = size_text(file.size)
    status = str(file.status)
    if status == FileStatus.READY:
        label = "Ready"
        pages, chunks = plural(file.pages, "page"), plural(file.chunks, "passage")
        meta = f"{size} · {pages} · {chunks} · {file.tokens:,} tokens"
    elif status == FileStatus.FAILED:
        label, meta = "Failed", f"{size} · not used for answers"
    elif status == FileStatus.PROCESSING:
        label, meta = f"Training {file.progress}%", f"{size} · reading and indexing"
    else:
        label, meta = "Queued", f"{size} · waiting to be processed"
    return {
        "id": file.id,
        "filename": file.filename,
        # What visitors see among an answer's sources (``training.titles``).
        "source_title": shown_title(file.title, file.detected_title, file.filename),
        "kind": kind_label(file),
        "status": status,
        "status_text": label,
        "pill": PILLS.get(status, "pill-wait"),
        "progress": file.progress,
        "meta": meta,
        "pages": file.pages,
        "chunks": file.chunks,
        "tokens": file.tokens,
        "error": (file.error_message or "This file could not be read.")
        if status == FileStatus.FAILED
        else None,
    }


def training_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ready = [r for r in rows if r["status"] == FileStatus.READY]
    busy = sum(r["status"] in (FileStatus.QUEUED, FileStatus.PROCESSING) for r in rows)
    failed = sum(r["status"] == FileStatus.FAILED for r in rows)
    parts = [f"{len(ready):,} ready"]
    if busy:
        parts.append(f"{busy:,} training")
    if failed:
        parts.append(f"{failed:,} failed")
    return {
        "files": len(rows),
        "ready": len(ready),
        "busy": busy,
        "failed": failed,
        "passages": sum(r["chunks"] for r in ready),
        "tokens": sum(r["tokens"] for r in ready),
        "text": " · ".join(parts),
    }


# --- the settings page's live preview -----------------------------------------------

COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def preview_of(form: dict[str, str], default_texts: dict[str, str]) -> dict[str, str]:
    """What the preview beside the settings form first draws, from the form's values."""
    colour = form.get("widget_color", "")
    colour = colour if COLOUR.fullmatch(colour) else "#2563eb"
    theme = form.get("widget_theme", "auto")
    return {
        "title": form.get("widget_title") or form.get("name") or "",
        "subtitle": form.get("text_subtitle") or default_texts["subtitle"],
        "placeholder": form.get("text_placeholder") or default_texts["placeholder"],
        "welcome": form.get("welcome_message", ""),
        "footer": form.get("text_powered_by") or default_texts["powered_by"],
        "colour": colour,
        "ink": text_on(colour),
        "theme": theme if theme in ("light", "dark") else "auto",
        "position": "left" if form.get("widget_position") == "left" else "right",
    }
