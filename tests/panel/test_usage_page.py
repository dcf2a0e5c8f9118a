"""The usage page and its CSV: the figures of ``chatmeter.chat.usage`` for real turns, the
filters, refusals of bad filters and of other accounts' assistants, and the vendored
chart library."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import itertools
import json
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chatmeter.accounts.models import User
from chatmeter.assistants import service as assistants
from chatmeter.assistants.schemas import AssistantFields
from chatmeter.chat import usage
from chatmeter.chat.admission import start_turn
from chatmeter.clock import FixedClock
from chatmeter.context import Context
from chatmeter.panel import rendering
from chatmeter.panel.pages import usage as usage_page
from tests.support.accounts import add_tokens, new_account
from tests.support.panel import Panel

STATIC = rendering.HERE / "static"
VENDOR = STATIC / "vendor" / "chart.js"
NOW = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC)
_visitors = itertools.count()


def account_of(ctx: Context, email: str = "owner@example.com") -> int:
    with ctx.db.read() as session:
        found = session.scalar(select(User.account_id).where(User.email == email))
    assert found is not None
    return found


def new_assistant(ctx: Context, account_id: int, name: str) -> tuple[int, str]:
    with ctx.db.uow() as uow:
        assistant = assistants.create_assistant(
            uow.session,
            account_id=account_id,
            fields=AssistantFields(name=name, max_tokens=16, temperature=0),
            now=ctx.clock.now(),
        )
        uow.commit()
        return assistant.id, assistant.public_key


def chat(ctx: Context, clock: FixedClock, public_key: str, at: str) -> None:
    """One real turn with the bundled model, answered at ``at`` (UTC)."""
    clock.set(dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC))
    start_turn(
        ctx,
        public_key=public_key,
        message="When are you open on Saturdays?",
        conversation_id=None,
        visitor=f"visitor-{next(_visitors)}",
    ).run()


def shop_with_usage(
    ctx: Context, clock: FixedClock, panel: Panel, timezone: str = "UTC"
) -> dict[str, int]:
    """A signed-in customer with two assistants and turns on three days of the last 30."""
    clock.set(dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC))
    assert panel.sign_up(timezone=timezone).status_code == 303
    account_id = account_of(ctx)
    add_tokens(ctx, account_id, 50_000)
    help_id, help_key = new_assistant(ctx, account_id, "Help Center")
    trade_id, trade_key = new_assistant(ctx, account_id, "Wholesale")
    chat(ctx, clock, help_key, "2026-11-02T09:00")
    chat(ctx, clock, help_key, "2026-11-12T15:00")
    chat(ctx, clock, trade_key, "2026-11-12T16:00")
    chat(ctx, clock, help_key, "2026-11-15T08:00")
    clock.set(NOW)
    return {"account": account_id, "Help Center": help_id, "Wholesale": trade_id}


def expected(
    ctx: Context, account_id: int, days: int, assistant_id: int | None = None, zone: str = "UTC"
) -> usage.Usage:
    today = NOW.astimezone(ZoneInfo(zone)).date()
    with ctx.db.read() as session:
        return usage.usage(
            session,
            account_id=account_id,
            first_day=today - dt.timedelta(days=days - 1),
            last_day=today,
            timezone=zone,
            assistant_id=assistant_id,
        )


def figure(page: str, name: str) -> str:
    match = re.search(rf'data-testid="{name}">([^<]+)<', page)
    assert match, name
    return match[1].strip()


def chart_data(page: str) -> dict[str, list[object]]:
    match = re.search(r'<script type="application/json" id="usage-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match[1])  # type: ignore[no-any-return]


def day_rows(page: str) -> list[list[str]]:
    table = page.split('data-testid="days"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in rows[1:]  # after the header row
    ]


def csv_rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


# --- signed out ------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", ["/panel/usage", "/panel/usage.csv?range=7d"])
def test_signed_out_visitors_are_sent_to_sign_in(panel: Panel, path: str) -> None:
    response = panel.client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/panel/sign-in"


# --- the page shows the query's figures --------------------------------------------------


@pytest.mark.model
def test_the_page_shows_the_figures_of_every_assistant(
    ctx: Context, clock: FixedClock, panel: Panel
) -> None:
    ids = shop_with_usage(ctx, clock, panel)
    want = expected(ctx, ids["account"], 30)
    total = want.total
    assert total.tokens > 0 and total.conversations == 4

    response = panel.client.get("/panel/usage")
    assert response.status_code == 200
    page = response.text
    assert figure(page, "total-tokens") == f"{total.tokens:,}"
    assert figure(page, "context-tokens") == f"{total.context_tokens:,}"
    assert figure(page, "response-tokens") == f"{total.generation_tokens:,}"
    assert figure(page, "conversations") == "4"
    assert figure(page, "messages") == "8"
    assert figure(page, "average") == f"{usage.rounded_ratio(total.tokens, 4):,}"
    assert "Tokens used ÷ conversations started" in page
    assert "17 October – 15 November 2026" in page

    data = chart_data(page)
    assert data["context"] == [d.figures.context_tokens for d in want.days]
    assert data["response"] == [d.figures.generation_tokens for d in want.days]
    assert data["conversations"] == [d.figures.conversations for d in want.days]
    assert len(data["labels"]) == 30 and data["labels"][-1] == "15 Nov"

    rows = day_rows(page)
    assert len(rows) == 30
    assert rows[-1][0] == "Sun 15 Nov 2026"
    for row, day in zip(rows, want.days, strict=True):
        f = day.figures
        assert row[1:] == [
            f"{n:,}"
            for n in (f.context_tokens, f.generation_tokens, f.tokens, f.conversations, f.messages)
        ]

    # Split by assistant, and the newest conversations with their own totals.
    assert "By assistant" in page
    started = re.findall(r'data-conversation="\d+">\s*<td[^>]*>([^<]+)</td>', page)
    assert started == [  # newest first
        "15 Nov 2026, 08:00",
        "12 Nov 2026, 16:00",
        "12 Nov 2026, 15:00",
        "2 Nov 2026, 09:00",
    ]
    assert "Help Center" in page and "Wholesale" in page
    # The chart comes from the vendored library, the page's own script and style; no
    # script runs inline.
    assert '<script src="/panel/static/vendor/chart.js/chart.umd.min.js" defer>' in page
    assert '<script src="/panel/static/usage.js" defer>' in page
    assert '<link rel="stylesheet" href="/panel/static/usage.css">' in page
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page)
    assert inline == [' type="application/json" id="usage-data"']
    assert 'href="/panel/usage.csv?range=30d"' in page


@pytest.mark.model
def test_one_assistant_and_a_shorter_range(ctx: Context, clock: FixedClock, panel: Panel) -> None:
    ids = shop_with_usage(ctx, clock, panel)
    helper = ids["Help Center"]
    want = expected(ctx, ids["account"], 7, assistant_id=helper)
    assert want.total.conversations == 2  # the 2nd is more than 7 days back

    page = panel.client.get(f"/panel/usage?assistant={helper}&range=7d").text

    assert figure(page, "total-tokens") == f"{want.total.tokens:,}"
    assert figure(page, "conversations") == "2"
    assert chart_data(page)["context"] == [d.figures.context_tokens for d in want.days]
    assert f'<option value="{helper}" selected>Help Center</option>' in page
    assert '<option value="7d" selected>Last 7 days</option>' in page
    assert html.escape(f"/panel/usage.csv?assistant={helper}&range=7d") in page
    assert page.count("data-conversation=") == 2
    assert "By assistant" not in page


@pytest.mark.model
def test_the_days_are_the_accounts_own(ctx: Context, clock: FixedClock, panel: Panel) -> None:
    """In Auckland, 11:30 UTC on the 14th is already the 15th."""
    clock.set(dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    panel.sign_up(timezone="Pacific/Auckland")
    account_id = account_of(ctx)
    add_tokens(ctx, account_id, 10_000)
    _id, key = new_assistant(ctx, account_id, "Help Center")
    chat(ctx, clock, key, "2026-11-14T11:30")
    clock.set(NOW)  # 01:00 on the 16th in Auckland

    page = panel.client.get("/panel/usage?range=7d").text

    rows = {row[0]: row for row in day_rows(page)}
    assert list(rows)[-1] == "Mon 16 Nov 2026"
    assert rows["Sun 15 Nov 2026"][4:] == ["1", "2"]
    assert rows["Sat 14 Nov 2026"][1:] == ["0"] * 5
    assert "Days in Pacific/Auckland time" in page


def test_with_no_usage_the_page_says_so(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    page = panel.client.get("/panel/usage").text
    assert "No usage in these days" in page
    assert 'href="/panel/assistants">Create an assistant' in page
    assert figure(page, "total-tokens") == "0"
    assert figure(page, "average") == "—"
    assert 'id="usage-chart"' not in page
    assert len(day_rows(page)) == 30


# --- the CSV --------------------------------------------------------------------------------


@pytest.mark.model
def test_the_csv_has_the_same_figures_one_row_a_day(
    ctx: Context, clock: FixedClock, panel: Panel
) -> None:
    ids = shop_with_usage(ctx, clock, panel)
    want = expected(ctx, ids["account"], 30)

    response = panel.client.get("/panel/usage.csv")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        'attachment; filename="chatmeter-usage-2026-10-17-to-2026-11-15.csv"'
    )
    rows = csv_rows(response.content)
    assert list(rows[0]) == usage_page.CSV_HEADER
    assert [row["date"] for row in rows] == [d.day.isoformat() for d in want.days]
    for row, day in zip(rows, want.days, strict=True):
        f = day.figures
        assert row["assistant"] == "All assistants"
        assert [int(row[c]) for c in usage_page.CSV_HEADER[2:]] == [
            f.context_tokens,
            f.generation_tokens,
            f.tokens,
            f.conversations,
            f.messages,
        ]
    assert sum(int(row["total_tokens"]) for row in rows) == want.total.tokens

    wholesale = ids["Wholesale"]
    one = csv_rows(panel.client.get(f"/panel/usage.csv?assistant={wholesale}&range=7d").content)
    only = expected(ctx, ids["account"], 7, assistant_id=wholesale)
    assert len(one) == 7 and {row["assistant"] for row in one} == {"Wholesale"}
    assert [int(row["total_tokens"]) for row in one] == [d.figures.tokens for d in only.days]
    assert sum(int(row["conversations"]) for row in one) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", ['=HYPERLINK("http://x")', "+1", "-1+2", "@SUM(A1)"])
def test_an_assistant_name_never_becomes_a_spreadsheet_formula(
    ctx: Context, panel: Panel, name: str
) -> None:
    panel.sign_up()
    assistant_id, _key = new_assistant(ctx, account_of(ctx), name)
    rows = csv_rows(panel.client.get(f"/panel/usage.csv?assistant={assistant_id}").content)
    assert {row["assistant"] for row in rows} == {"'" + name}
    assert usage_page.safe_cell("Help Center") == "Help Center"


RANGE_DAYS = {
    "7d": ("2026-11-09", 7, "9 – 15 November 2026"),
    "30d": ("2026-10-17", 30, "17 October – 15 November 2026"),
    "90d": ("2026-08-18", 90, "18 August – 15 November 2026"),
    "this-month": ("2026-11-01", 15, "1 – 15 November 2026"),
    "last-month": ("2026-10-01", 31, "1 – 31 October 2026"),
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", list(usage_page.RANGES))
def test_each_range_covers_its_local_days(panel: Panel, key: str) -> None:
    first, count, text = RANGE_DAYS[key]
    panel.sign_up()
    rows = csv_rows(panel.client.get(f"/panel/usage.csv?range={key}").content)
    assert len(rows) == count
    assert (rows[0]["date"], rows[-1]["date"]) == (
        first,
        "2026-11-15" if key != "last-month" else "2026-10-31",
    )
    assert figure(panel.client.get(f"/panel/usage?range={key}").text, "range") == text


# --- bad filters and other accounts ------------------------------------------------------------

BAD_FILTERS = [
    ("range=365d", usage_page.RANGE_MESSAGE),
    ("range=7", usage_page.RANGE_MESSAGE),
    ("range=" + "x" * 5000, usage_page.RANGE_MESSAGE),
    ("range=%00", usage_page.RANGE_MESSAGE),
    ("assistant=abc", usage_page.ASSISTANT_MESSAGE),
    ("assistant=-1", usage_page.ASSISTANT_MESSAGE),
    ("assistant=1.5", usage_page.ASSISTANT_MESSAGE),
    ("assistant=%D9%A1", usage_page.ASSISTANT_MESSAGE),  # an Arabic-Indic one
    ("assistant=" + "9" * 40, usage_page.ASSISTANT_MESSAGE),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("query", "message"), BAD_FILTERS)
@pytest.mark.parametrize("path", ["/panel/usage", "/panel/usage.csv"])
def test_bad_filters_get_a_readable_message_and_400(
    panel: Panel, path: str, query: str, message: str
) -> None:
    panel.sign_up()
    response = panel.client.get(f"{path}?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert f'<div class="alert alert-error" role="alert">{html.escape(message)}</div>' in (
        response.text
    )
    assert 'data-testid="total-tokens"' not in response.text  # no figures for a bad filter
    assert 'action="/panel/usage"' in response.text  # the form, to try again


@pytest.mark.model
def test_another_accounts_assistant_reads_as_no_such_assistant(
    ctx: Context, clock: FixedClock, panel: Panel
) -> None:
    ids = shop_with_usage(ctx, clock, panel)
    other = new_account(ctx, email="rival@example.com")
    add_tokens(ctx, other, 5_000)
    rival_id, rival_key = new_assistant(ctx, other, "Rival Secret Bot")
    chat(ctx, clock, rival_key, "2026-11-15T10:00")
    clock.set(NOW)
    missing = max(ids["Help Center"], ids["Wholesale"], rival_id) + 100

    for path in ("/panel/usage", "/panel/usage.csv"):
        theirs = panel.client.get(f"{path}?assistant={rival_id}")
        nobody = panel.client.get(f"{path}?assistant={missing}")
        assert theirs.status_code == nobody.status_code == 404
        assert usage_page.UNKNOWN_ASSISTANT in theirs.text
        assert "Rival Secret Bot" not in theirs.text
        assert theirs.text == nobody.text  # the page does not echo the id it refused

    # The whole account's figures leave the other account out.
    page = panel.client.get("/panel/usage").text
    assert figure(page, "total-tokens") == f"{expected(ctx, ids['account'], 30).total.tokens:,}"
    assert "Rival Secret Bot" not in page


# --- the vendored chart library ---------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_chart_library_is_served_with_its_licence(panel: Panel) -> None:
    script = panel.client.get("/panel/static/vendor/chart.js/chart.umd.min.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.text.startswith("/*!\n * Chart.js v4.")
    assert script.content == (VENDOR / "chart.umd.min.js").read_bytes()
    licence = (VENDOR / "LICENSE.md").read_text()
    assert "The MIT License" in licence and "Chart.js Contributors" in licence
    assert "Jukka Kurkela" in (VENDOR / "LICENSE-kurkle-color.md").read_text()
    readme = (VENDOR / "README.md").read_text()
    version = re.search(r"Chart\.js v(4\.\d+\.\d+)", script.text)
    assert version and f"chart.js@{version[1]}" in readme
    assert panel.client.get("/panel/static/vendor/chart.js/LICENSE.md").status_code == 200
    for asset in ("usage.js", "usage.css"):
        assert panel.client.get(f"/panel/static/{asset}").status_code == 200
