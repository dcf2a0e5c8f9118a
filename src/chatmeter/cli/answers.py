"""What an assistant's visitors asked, and the customer's corrections to its answers."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from chatmeter.cli.base import JsonOpt, assistants_app, context, emit
from chatmeter.context import Context
from chatmeter.db import MAX_ID

corrections_app = typer.Typer(
    help="An assistant's corrections: the answers it gives instead.", no_args_is_help=True
)
assistants_app.add_typer(corrections_app, name="corrections")

AssistantArg = Annotated[int, typer.Argument(help="The assistant's id.", min=1, max=MAX_ID)]
CorrectionArg = Annotated[int, typer.Argument(help="The correction's id.", min=1, max=MAX_ID)]


def _account_of(ctx: Context, assistant_id: int) -> int:
    """The account of an assistant (the operator may reach every account's)."""
    from chatmeter.assistants.models import Assistant
    from chatmeter.errors import NotFound

    with ctx.db.read() as session:
        found = session.get(Assistant, assistant_id)
        if found is None or found.deleted_at is not None:
            raise NotFound("no such assistant", assistant_id=assistant_id)
        return found.account_id


def _questions_text(data: dict[str, Any]) -> str:
    def mark(item: dict[str, Any]) -> str:
        return "  (corrected)" if item["covered"] else ""

    lines = ["Unanswered questions:"]
    lines += [f"  {q['count']}x  {q['question']}{mark(q)}" for q in data["unanswered"]] or [
        "  none"
    ]
    lines.append("Poorly rated answers:")
    lines += [
        f"  {r['rated_at']:%Y-%m-%d %H:%M}  {r['question']}{mark(r)}\n      answered: {r['answer']}"
        for r in data["poorly_rated"]
    ] or ["  none"]
    lines.append("Most frequent questions (30 days):")
    lines += [f"  {q['count']}x  {q['question']}{mark(q)}" for q in data["frequent"]] or ["  none"]
    return "\n".join(lines)


def _correction_text(c: dict[str, Any]) -> str:
    return f"correction {c['id']}: {c['question']}\n  {c['answer']}"


@assistants_app.command("questions")
def assistants_questions(assistant: AssistantArg, as_json: JsonOpt = False) -> None:
    """Unanswered questions, poorly rated answers and the most frequent questions."""
    from chatmeter.answers import insights

    with context() as ctx:
        account_id = _account_of(ctx, assistant)
        with ctx.db.read() as session:
            found = insights.insights(
                session, account_id=account_id, assistant_id=assistant, now=ctx.clock.now()
            )
        data = insights.insights_dict(found)
    emit(data, as_json, _questions_text)


@corrections_app.command("list")
def corrections_list(assistant: AssistantArg, as_json: JsonOpt = False) -> None:
    """An assistant's corrections, newest first."""
    from chatmeter.answers import corrections

    with context() as ctx:
        account_id = _account_of(ctx, assistant)
        with ctx.db.read() as session:
            data = [
                corrections.correction_dict(c)
                for c in corrections.list_corrections(
                    session, account_id=account_id, assistant_id=assistant
                )
            ]
    emit(
        data,
        as_json,
        lambda rows: "\n".join(map(_correction_text, rows)) or "no corrections",
    )


@corrections_app.command("add")
def corrections_add(
    assistant: AssistantArg,
    question: Annotated[str, typer.Option(help="The question, as visitors ask it.")],
    answer: Annotated[str, typer.Option(help="The answer the assistant gives instead.")],
    as_json: JsonOpt = False,
) -> None:
    """Write the answer to a question; the same and similar questions get it from now on."""
    from chatmeter.answers import corrections

    with context() as ctx:
        data = corrections.save(
            ctx,
            account_id=_account_of(ctx, assistant),
            assistant_id=assistant,
            question=question,
            answer=answer,
        )
    emit(data, as_json, _correction_text)


@corrections_app.command("remove")
def corrections_remove(assistant: AssistantArg, correction: CorrectionArg) -> None:
    """Remove a correction; its question is answered from the documents again."""
    from chatmeter.answers import corrections

    with context() as ctx:
        corrections.remove(
            ctx,
            account_id=_account_of(ctx, assistant),
            assistant_id=assistant,
            correction_id=correction,
        )
    typer.echo(f"correction {correction} removed")
