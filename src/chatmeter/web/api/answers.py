"""What an assistant's visitors asked, and the customer's corrections to its answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field, StrictStr

from chatmeter.answers import corrections, insights
from chatmeter.web.deps import AccountDep, ContextDep, IdPath
from chatmeter.web.schemas import Strict

router = APIRouter(tags=["answers"])

# Far above the service's own limits (500 and 4,000 characters once trimmed), which
# word the refusal; this only keeps megabytes out.
Text = Annotated[StrictStr, Field(max_length=20_000)]


class CorrectionIn(Strict):
    question: Text
    answer: Text


@router.get("/assistants/{assistant_id}/questions")
def questions(assistant_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """Unanswered questions, poorly rated answers and the most frequent questions of the
    last 30 days, each saying whether a correction covers it."""
    with ctx.db.read() as session:
        found = insights.insights(
            session, account_id=account_id, assistant_id=assistant_id, now=ctx.clock.now()
        )
    return insights.insights_dict(found)


@router.get("/assistants/{assistant_id}/corrections")
def list_corrections(
    assistant_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        return [
            corrections.correction_dict(c)
            for c in corrections.list_corrections(
                session, account_id=account_id, assistant_id=assistant_id
            )
        ]


@router.post("/assistants/{assistant_id}/corrections", status_code=201)
def add_correction(
    assistant_id: IdPath, body: CorrectionIn, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """The answer the assistant gives from now on to this question and similar ones; a
    question it has a correction for already gets the new answer."""
    return corrections.save(
        ctx,
        account_id=account_id,
        assistant_id=assistant_id,
        question=body.question,
        answer=body.answer,
    )


@router.put("/assistants/{assistant_id}/corrections/{correction_id}")
def update_correction(
    assistant_id: IdPath,
    correction_id: IdPath,
    body: CorrectionIn,
    ctx: ContextDep,
    account_id: AccountDep,
) -> dict[str, Any]:
    return corrections.save(
        ctx,
        account_id=account_id,
        assistant_id=assistant_id,
        correction_id=correction_id,
        question=body.question,
        answer=body.answer,
    )


@router.delete("/assistants/{assistant_id}/corrections/{correction_id}", status_code=204)
def delete_correction(
    assistant_id: IdPath, correction_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> Response:
    corrections.remove(
        ctx, account_id=account_id, assistant_id=assistant_id, correction_id=correction_id
    )
    return Response(status_code=204)
