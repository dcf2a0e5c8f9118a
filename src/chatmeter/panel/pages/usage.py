"""The usage page: tokens per day by kind and assistant, conversations, CSV.

``GET /panel/usage`` and ``GET /panel/usage.csv`` take the same two filters,
``assistant`` (an id, or empty for all) and ``range`` (one of ``RANGES``), and
show the same figures from ``chatmeter.chat.usage``. A filter that is not one
the page offers gets the page back with a readable message and status 400; an
assistant id that is not the account's (another account's or none at all) gets
404 with the same message either way, so it tells nothing about other accounts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from chatmeter.chat import usage as usage_figures
from chatmeter.chat.usage import ConversationRow, Usage
from chatmeter.errors import InvalidInput, NotFound
from chatmeter.formatting import MONTHS, local_time, short_date
from chatmeter.panel.deps import Refusal, Viewer, ViewerDep, ctx_of, refused_by
from chatmeter.panel.rendering import render

router = APIRouter(prefix="/panel", include_in_schema=False)

RANGE_MESSAGE = "Choose a range from the list: the last 7, 30 or 90 days, this month or last month."
ASSISTANT_MESSAGE = "Choose an assistant from the list, or all assistants."
UNKNOWN_ASSISTANT = "There is no such assistant in your account. Choose one from the list."
ALL_ASSISTANTS = "All assistants"
RECENT_CONVERSATIONS = 10
# What a spreadsheet would run as a formula if a cell started with it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_HEADER = [
    "date",
    "assistant",
    "training_context_tokens",
    "response_tokens",
    "total_tokens",
    "conversations",
    "messages",
]


def _last_days(count: int) -> Callable[[dt.date], tuple[dt.date, dt.date]]:
    return lambda today: (today - dt.timedelta(days=count - 1), today)


def _this_month(today: dt.date) -> tuple[dt.date, dt.date]:
    return today.replace(day=1), today


def _last_month(today: dt.date) -> tuple[dt.date, dt.date]:
    last = today.replace(day=1) - dt.timedelta(days=1)
    return last.replace(day=1), last


# The ranges the page offers: key → (label, local days it covers given today's date).
RANGES: dict[str, tuple[str, Callable[[dt.date], tuple[dt.date, dt.date]]]] = {
    "7d": ("Last 7 days", _last_days(7)),
    "30d": ("Last 30 days", _last_days(30)),
    "90d": ("Last 90 days", _last_days(90)),
    "this-month": ("This month", _this_month),
    "last-month": ("Last month", _last_month),
}
DEFAULT_RANGE = "30d"


@dataclass(frozen=True)
class Filters:
    assistant_id: int | None = None
    range: str = DEFAULT_RANGE

    @property
    def query(self) -> str:
        """The filters as a query string, for the CSV link (defaults left out)."""
        params = {"assistant": self.assistant_id or "", "range": self.range}
        return urlencode({k: v for k, v in params.items() if v != ""})

    def days(self, today: dt.date) -> tuple[dt.date, dt.date]:
        return RANGES[self.range][1](today)


def parse_filters(params: Mapping[str, str], assistants: Mapping[int, Any]) -> Filters:
    """The page's filters from its query string; ``InvalidInput`` or ``NotFound`` with the
    sentence the page shows."""
    range_key = params.get("range", "") or DEFAULT_RANGE
    if range_key not in RANGES:
        raise InvalidInput(RANGE_MESSAGE, field="range")
    text = params.get("assistant", "").strip()
    if not text:
        return Filters(None, range_key)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidInput(ASSISTANT_MESSAGE, field="assistant")
    if int(text) not in assistants:
        raise NotFound(UNKNOWN_ASSISTANT)
    return Filters(int(text), range_key)


def local_today(now: dt.datetime, zone: str) -> dt.date:
    return now.astimezone(ZoneInfo(zone)).date()


# --- the page ---------------------------------------------------------------------


def _refused(request: Request, refused: Refusal) -> HTMLResponse:
    """The page with the default filters, no figures and what was wrong with the asked ones."""
    assert refused.viewer is not None
    with ctx_of(request).db.read() as session:
        assistants = usage_figures.assistant_names(session, account_id=refused.viewer.account_id)
    status = 400 if isinstance(refused.error, InvalidInput) else refused.status
    return _page(
        request, refused.viewer, assistants, Filters(), status=status, error=refused.message
    )


@router.get("/usage", dependencies=[refused_by(_refused)])
def usage_page(request: Request, viewer: ViewerDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        assistants = usage_figures.assistant_names(session, account_id=viewer.account_id)
        filters = parse_filters(request.query_params, assistants)
        first, last = filters.days(local_today(ctx.clock.now(), viewer.timezone))
        report = _usage(session, viewer, filters, first, last)
        recent = usage_figures.recent_conversations(
            session,
            account_id=viewer.account_id,
            first_day=first,
            last_day=last,
            timezone=viewer.timezone,
            assistant_id=filters.assistant_id,
            limit=RECENT_CONVERSATIONS,
        )
    return _page(request, viewer, assistants, filters, report=report, recent=recent)


def _usage(
    session: Session, viewer: Viewer, filters: Filters, first: dt.date, last: dt.date
) -> Usage:
    return usage_figures.usage(
        session,
        account_id=viewer.account_id,
        first_day=first,
        last_day=last,
        timezone=viewer.timezone,
        assistant_id=filters.assistant_id,
    )


def _page(
    request: Request,
    viewer: Viewer,
    assistants: Mapping[int, tuple[str, bool]],
    filters: Filters,
    *,
    status: int = 200,
    error: str | None = None,
    report: Usage | None = None,
    recent: list[ConversationRow] | None = None,
) -> HTMLResponse:
    return render(
        request,
        "usage.html",
        viewer=viewer,
        active_nav="usage",
        status=status,
        error=error,
        filters=filters,
        selected_name=assistants[filters.assistant_id][0] if filters.assistant_id else None,
        ranges=[(key, label) for key, (label, _days) in RANGES.items()],
        assistants=[(id_, name, deleted) for id_, (name, deleted) in assistants.items()],
        report=report,
        view=_view(report, recent or [], viewer.timezone) if report else None,
    )


def _view(report: Usage, recent: list[ConversationRow], zone: str) -> dict[str, Any]:
    """The report as the template and the chart script read it."""
    total = report.total
    return {
        "total": total,
        "context_percent": round(total.context_tokens * 100 / total.tokens) if total.tokens else 0,
        "range_text": _range_text(report.first_day, report.last_day),
        "busiest": _busiest(report),
        "days": [
            {
                "date": short_date(d.day, weekday=True),
                "iso": d.day.isoformat(),
                "figures": d.figures,
            }
            for d in report.days
        ],
        "chart": {
            "labels": [f"{d.day.day} {d.day:%b}" for d in report.days],
            "titles": [f"{d.day:%a} {d.day.day} {d.day:%b %Y}" for d in report.days],
            "context": [d.figures.context_tokens for d in report.days],
            "response": [d.figures.generation_tokens for d in report.days],
            "conversations": [d.figures.conversations for d in report.days],
        },
        "recent": [{"row": row, "started": local_time(row.started_at, zone)} for row in recent],
    }


def _busiest(report: Usage) -> dict[str, Any] | None:
    """The day with the most tokens (the latest of equals), if any day has some."""
    day = max(report.days, key=lambda d: (d.figures.tokens, d.day), default=None)
    if day is None or not day.figures.tokens:
        return None
    return {"date": f"{day.day:%a} {day.day.day} {day.day:%b}", "figures": day.figures}


def _range_text(first: dt.date, last: dt.date) -> str:
    """``9 – 15 November 2026``, ``17 October – 15 November 2026``: nothing said twice."""
    end = f"{last.day} {MONTHS[last.month - 1]} {last.year}"
    if first == last:
        return end
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day} – {end}"
    year = "" if first.year == last.year else f" {first.year}"
    return f"{first.day} {MONTHS[first.month - 1]}{year} – {end}"


# --- the CSV --------------------------------------------------------------------------


@router.get("/usage.csv", dependencies=[refused_by(_refused)])
def usage_csv(request: Request, viewer: ViewerDep) -> Response:
    """The page's per-day figures, one row a day, as a download."""
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        assistants = usage_figures.assistant_names(session, account_id=viewer.account_id)
        filters = parse_filters(request.query_params, assistants)
        first, last = filters.days(local_today(ctx.clock.now(), viewer.timezone))
        report = _usage(session, viewer, filters, first, last)
    name = assistants[filters.assistant_id][0] if filters.assistant_id else ALL_ASSISTANTS
    filename = f"chatmeter-usage-{first.isoformat()}-to-{last.isoformat()}.csv"
    return Response(
        csv_text(report, name),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def csv_text(report: Usage, assistant: str) -> str:
    """A header row and one row per local day; a BOM so spreadsheets read UTF-8 names."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    label = safe_cell(assistant)
    for day in report.days:
        f = day.figures
        writer.writerow(
            [
                day.day.isoformat(),
                label,
                f.context_tokens,
                f.generation_tokens,
                f.tokens,
                f.conversations,
                f.messages,
            ]
        )
    return "\ufeff" + out.getvalue()


def safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ``'`` keeps ``=HYPERLINK(...)`` inert."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
