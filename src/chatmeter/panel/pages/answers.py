"""An assistant's "Answers" page: what visitors asked that it could not answer or that
they rated down, the questions asked most, and the customer's corrections.

"Write the answer" opens the correction form with the question filled in; a saved
correction answers that question and similar ones from then on. Every form carries
the CSRF token, and a refused one comes back as it was sent, with the reason.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from chatmeter.answers import corrections, insights
from chatmeter.errors import NotFound
from chatmeter.formatting import local_time
from chatmeter.panel.assistant_views import BotDep, assistant_page, bot_of, parse_id
from chatmeter.panel.deps import (
    CheckedFormDep,
    NoSuchPage,
    Refusal,
    Viewer,
    ViewerDep,
    ctx_of,
    refused_by,
    sentence,
)
from chatmeter.panel.rendering import form_text

router = APIRouter(prefix="/panel", include_in_schema=False)

DONE = {
    "saved": "The answer is saved. The assistant gives it to this question and similar ones.",
    "removed": "The correction is removed. That question is answered from your files again.",
}
RAW_LIMIT = 20_000  # far above the service's limits, which word the refusal


@router.get("/assistants/{assistant_id}/answers")
def answers_page(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    ctx = ctx_of(request)
    with ctx.db.read() as session:
        found = insights.insights(
            session, account_id=viewer.account_id, assistant_id=bot["id"], now=ctx.clock.now()
        )
        written = corrections.list_corrections(
            session, account_id=viewer.account_id, assistant_id=bot["id"]
        )
        rows = [
            corrections.correction_dict(c) | {"updated": local_time(c.updated_at, viewer.timezone)}
            for c in written
        ]

    def when(item: Any, name: str) -> str:
        return local_time(getattr(item, name), viewer.timezone)

    return assistant_page(
        request,
        viewer,
        "assistant_answers.html",
        bot=bot,
        tab="answers",
        unanswered=[{"item": q, "when": when(q, "last_asked")} for q in found.unanswered],
        poorly_rated=[{"item": r, "when": when(r, "rated_at")} for r in found.poorly_rated],
        frequent=found.frequent,
        corrections=rows,
        window=insights.WINDOW_DAYS,
        notice=DONE.get(request.query_params.get("done", "")),
    )


# --- the correction form ----------------------------------------------------------------


def _form_page(
    request: Request,
    viewer: Viewer,
    bot: dict[str, Any],
    *,
    form: dict[str, str],
    correction_id: int | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    return assistant_page(
        request,
        viewer,
        "assistant_correction.html",
        bot=bot,
        tab="answers",
        form=form,
        correction_id=correction_id,
        limits={"question": corrections.MAX_QUESTION_CHARS, "answer": corrections.MAX_ANSWER_CHARS},
        status=status,
        **context,
    )


def _refused(request: Request, refused: Refusal) -> Response:
    """The form again as it was sent, the bad field marked."""
    assert refused.viewer is not None
    sent = {
        name: value[:RAW_LIMIT] if isinstance(value := refused.form.get(name), str) else ""
        for name in ("question", "answer")
    }
    field = refused.error.details.get("field")
    return _form_page(
        request,
        refused.viewer,
        bot_of(request),
        form=sent,
        correction_id=parse_id(request.path_params.get("correction_id", "")),
        status=refused.status,
        error=sentence(refused.message),
        errors={field: sentence(refused.message)} if isinstance(field, str) else {},
    )


@router.get("/assistants/{assistant_id}/answers/new")
def new_correction(request: Request, viewer: ViewerDep, bot: BotDep) -> Response:
    """The form, with the question of "Write the answer" filled in."""
    question = request.query_params.get("question", "")[: corrections.MAX_QUESTION_CHARS]
    return _form_page(request, viewer, bot, form={"question": question, "answer": ""})


@router.post("/assistants/{assistant_id}/corrections", dependencies=[refused_by(_refused)])
def add_correction(
    request: Request, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep
) -> Response:
    corrections.save(
        ctx_of(request),
        account_id=viewer.account_id,
        assistant_id=bot["id"],
        question=form_text(form, "question", limit=RAW_LIMIT),
        answer=form_text(form, "answer", limit=RAW_LIMIT),
    )
    return RedirectResponse(f"/panel/assistants/{bot['id']}/answers?done=saved", 303)


def _owned(request: Request, viewer: Viewer, bot: dict[str, Any], raw_id: str) -> Any:
    correction_id = parse_id(raw_id)
    if correction_id is None:
        raise NoSuchPage
    with ctx_of(request).db.read() as session:
        try:
            return corrections.get(
                session,
                account_id=viewer.account_id,
                assistant_id=bot["id"],
                correction_id=correction_id,
            )
        except NotFound:
            raise NoSuchPage from None


@router.get("/assistants/{assistant_id}/corrections/{correction_id}")
def edit_correction(
    request: Request, correction_id: str, viewer: ViewerDep, bot: BotDep
) -> Response:
    found = _owned(request, viewer, bot, correction_id)
    return _form_page(
        request,
        viewer,
        bot,
        form={"question": found.question, "answer": found.answer},
        correction_id=found.id,
    )


@router.post(
    "/assistants/{assistant_id}/corrections/{correction_id}", dependencies=[refused_by(_refused)]
)
def save_correction(
    request: Request, correction_id: str, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep
) -> Response:
    found = _owned(request, viewer, bot, correction_id)
    corrections.save(
        ctx_of(request),
        account_id=viewer.account_id,
        assistant_id=bot["id"],
        correction_id=found.id,
        question=form_text(form, "question", limit=RAW_LIMIT),
        answer=form_text(form, "answer", limit=RAW_LIMIT),
    )
    return RedirectResponse(f"/panel/assistants/{bot['id']}/answers?done=saved", 303)


@router.post("/assistants/{assistant_id}/corrections/{correction_id}/delete")
def delete_correction(
    request: Request, correction_id: str, viewer: ViewerDep, bot: BotDep, form: CheckedFormDep
) -> Response:
    found = _owned(request, viewer, bot, correction_id)
    corrections.remove(
        ctx_of(request),
        account_id=viewer.account_id,
        assistant_id=bot["id"],
        correction_id=found.id,
    )
    return RedirectResponse(f"/panel/assistants/{bot['id']}/answers?done=removed", 303)
