"""Auto top-up on the billing page: the owner's form; the rules are ``billing.topups``'."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from chatmeter.billing import subscriptions, topups
from chatmeter.panel.deps import CheckedFormDep, Refusal, ViewerDep, ctx_of, refused_by
from chatmeter.panel.pages.billing import billing_page
from chatmeter.panel.rendering import form_text, owner_only, typed_text

router = APIRouter(prefix="/panel", include_in_schema=False)

FIELDS = ("threshold", "packages", "monthly_cap")
SAVED = "auto-top-up"


def _refused(request: Request, refused: Refusal) -> Response:
    assert refused.viewer is not None
    typed = {name: typed_text(refused, name, limit=20) for name in FIELDS}
    return billing_page(
        request,
        refused.viewer,
        status=refused.status,
        error=refused.message,
        topup_typed=typed | {"enabled": refused.form.get("enabled") == "on"},
    )


@router.post("/billing/auto-top-up", dependencies=[refused_by(_refused)])
def save(request: Request, viewer: ViewerDep, form: CheckedFormDep) -> Response:
    """Save the whole form: a checkbox left unticked turns auto top-up off."""
    ctx = ctx_of(request)
    owner_only(viewer)
    numbers = {name: form_text(form, name, limit=20) for name in FIELDS}
    with ctx.db.uow() as uow:
        topups.configure(
            uow.session,
            account_id=viewer.account_id,
            now=ctx.clock.now(),
            enabled=form.get("enabled") == "on",
            threshold=topups.parse_number(
                numbers["threshold"], topups.THRESHOLD_MESSAGE, "threshold"
            ),
            packages=topups.parse_number(
                numbers["packages"], subscriptions.PACKAGES_MESSAGE, "packages"
            ),
            monthly_cap=topups.parse_number(
                numbers["monthly_cap"], topups.CAP_MESSAGE, "monthly_cap"
            ),
        )
        uow.commit()
    return RedirectResponse(f"/panel/billing?done={SAVED}#auto-top-up", status_code=303)
