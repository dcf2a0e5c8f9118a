"""Every API and panel route, and how the tenant-isolation matrix calls it.

``COVERAGE`` has one line per route and method, keyed ``"METHOD /path"`` exactly as
the app's route table spells it. A route missing here fails
``test_every_route_has_an_isolation_rule`` with the line to add, so no new route
can slip past the matrix. The rules:

- ``api(...)``: needs an API key. ``panel(...)``: needs a signed-in session (and the
  CSRF token, which the matrix adds to every form and scripted call).
  With ids in the path, account B calls the route with account A's real ids (each
  path parameter either A's or B's own, at least one A's) and must get exactly the
  answer a non-existent id gets (a 404), with nothing of A's changed. Without ids,
  B calls it as itself and must see nothing of A's. Either way, a caller without a
  key or session is refused.
  ``json``/``form``/``files``: a valid body, so that the id is what decides.
  ``params``: fixed query parameters the route needs. ``query``: query parameters that
  name another row (``{"assistant_id": "assistant_id"}``:
  the parameter ``assistant_id`` takes an id of the kind ``assistant_id``); A's id must
  be answered like a non-existent one. ``cursor``: a paging parameter and the kind of
  id it takes; paging from A's id shows only B's rows. ``lists``: the kind of id the
  answer lists; B's list holds only B's ids.
- ``public(why)``: open to anyone by design; say why.

A path parameter must name a kind in ``ID_KINDS`` (the model whose rows it names,
all with an ``account_id``); a new kind of id is one more line there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.routing import Mount

from chatmeter.accounts.models import ApiKey, EmailLink, LinkPurpose, User
from chatmeter.answers.models import Correction
from chatmeter.assistants.models import Assistant
from chatmeter.billing.models import Invoice
from chatmeter.chat.models import Conversation
from chatmeter.ledger.models import Hold, LedgerEntry
from chatmeter.training.models import TrainingFile
from chatmeter.webhooks.models import WebhookDelivery, WebhookEndpoint

# The parts of the app the matrix covers: what an account's people and keys reach.
PREFIXES = ("/api/", "/panel")


@dataclass(frozen=True)
class IdKind:
    """Rows of ``model`` belong to the account in their ``account_id`` column."""

    model: Any
    where: tuple[Any, ...] = ()

    def ids(self, session: Session, account_id: int) -> list[int]:
        query = select(self.model.id).where(self.model.account_id == account_id, *self.where)
        return list(session.scalars(query.order_by(self.model.id)))


class Deliveries(IdKind):
    """A webhook delivery is the account's whose endpoint is."""

    def ids(self, session: Session, account_id: int) -> list[int]:
        query = (
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookEndpoint.account_id == account_id)
        )
        return list(session.scalars(query.order_by(WebhookDelivery.id)))


ID_KINDS: dict[str, IdKind] = {
    "assistant_id": IdKind(Assistant, (Assistant.deleted_at.is_(None),)),
    "file_id": IdKind(TrainingFile),
    "conversation_id": IdKind(Conversation),
    "hold_id": IdKind(Hold),
    "invoice_id": IdKind(Invoice),
    "user_id": IdKind(User),
    "invitation_id": IdKind(EmailLink, (EmailLink.purpose == LinkPurpose.INVITE,)),
    "ledger_entry_id": IdKind(LedgerEntry),
    "key_id": IdKind(ApiKey),
    "correction_id": IdKind(Correction),
    "endpoint_id": IdKind(WebhookEndpoint),
    "delivery_id": Deliveries(WebhookDelivery),
}


@dataclass(frozen=True)
class Rule:
    guard: str  # "api", "panel" or "public"
    json: Any = None
    form: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)  # fixed query values
    cursor: Mapping[str, str] = field(default_factory=dict)
    lists: str | None = None
    scripted: bool = False  # a panel endpoint for the page's script: CSRF in a header
    last: bool = False  # ends the caller's session: called after everything else
    why: str = ""


def api(**call: Any) -> Rule:
    return Rule("api", **call)


def panel(**call: Any) -> Rule:
    return Rule("panel", **call)


def public(why: str) -> Rule:
    return Rule("public", why=why)


UPLOAD = {"files": ("notes.txt", b"Opening hours: 9 to 5.\n")}
TAKEN_OVER = {"name": "Taken over"}
CORRECTION = {"question": "Who owns this now?", "answer": "Taken over."}

COVERAGE: dict[str, Rule] = {
    # --- the REST API ------------------------------------------------------------------
    "GET /api/v1/openapi.json": public("the API's description"),
    "GET /api/v1/docs": public("the API's documentation page"),
    "GET /api/v1/balance": api(),
    "POST /api/v1/holds": api(json={"tokens": 10}),
    "GET /api/v1/holds/{hold_id}": api(),
    "POST /api/v1/holds/{hold_id}/settle": api(json={"context": 1, "generation": 1}),
    "POST /api/v1/holds/{hold_id}/release": api(),
    "GET /api/v1/ledger": api(cursor={"before": "ledger_entry_id"}, lists="ledger_entry_id"),
    "POST /api/v1/purchases": api(json={"packages": 1}),
    "GET /api/v1/subscription": api(),
    "PATCH /api/v1/subscription": api(json={"packages": 2}),
    "POST /api/v1/subscription/cancel": api(),
    "GET /api/v1/invoices": api(lists="invoice_id"),
    "GET /api/v1/invoices/{invoice_id}/pdf": api(),
    "GET /api/v1/invoices/{invoice_id}/receipt.pdf": api(),
    "GET /api/v1/billing/details": api(),
    "GET /api/v1/billing/card": api(),
    "GET /api/v1/billing/auto-top-up": api(),
    "PUT /api/v1/billing/auto-top-up": api(json={"enabled": False, "threshold": 7}),
    "PUT /api/v1/billing/details": api(json=TAKEN_OVER),
    "GET /api/v1/account": api(),
    "PATCH /api/v1/account": api(json={"name": "Renamed"}),
    "GET /api/v1/assistants": api(lists="assistant_id"),
    "POST /api/v1/assistants": api(json={"name": "Another"}),
    "GET /api/v1/assistants/{assistant_id}": api(),
    "PATCH /api/v1/assistants/{assistant_id}": api(json=TAKEN_OVER),
    "DELETE /api/v1/assistants/{assistant_id}": api(),
    "POST /api/v1/assistants/{assistant_id}/public-key": api(),
    "POST /api/v1/assistants/{assistant_id}/files": api(files=UPLOAD),
    "GET /api/v1/assistants/{assistant_id}/files": api(),
    "GET /api/v1/assistants/{assistant_id}/files/{file_id}": api(),
    "DELETE /api/v1/assistants/{assistant_id}/files/{file_id}": api(),
    "PATCH /api/v1/assistants/{assistant_id}/files/{file_id}": api(json={"title": "Taken over"}),
    "GET /api/v1/assistants/{assistant_id}/questions": api(),
    "GET /api/v1/forecast": api(),
    "GET /api/v1/assistants/{assistant_id}/estimate": api(params={"conversations_per_day": "5"}),
    "GET /api/v1/assistants/{assistant_id}/corrections": api(),
    "POST /api/v1/assistants/{assistant_id}/corrections": api(json=CORRECTION),
    "PUT /api/v1/assistants/{assistant_id}/corrections/{correction_id}": api(json=CORRECTION),
    "DELETE /api/v1/assistants/{assistant_id}/corrections/{correction_id}": api(),
    "GET /api/v1/conversations": api(
        query={"assistant_id": "assistant_id"},
        cursor={"before": "conversation_id"},
        lists="conversation_id",
    ),
    "GET /api/v1/conversations/{conversation_id}": api(),
    "GET /api/v1/webhook-event-types": api(),
    "GET /api/v1/webhooks": api(lists="endpoint_id"),
    "POST /api/v1/webhooks": api(json={"url": "https://hooks.example.com/in"}),
    "GET /api/v1/webhooks/{endpoint_id}": api(),
    "PATCH /api/v1/webhooks/{endpoint_id}": api(json={"description": "Taken over"}),
    "DELETE /api/v1/webhooks/{endpoint_id}": api(),
    "POST /api/v1/webhooks/{endpoint_id}/rotate-secret": api(),
    "POST /api/v1/webhooks/{endpoint_id}/test": api(),
    "GET /api/v1/webhooks/{endpoint_id}/deliveries": api(),
    "POST /api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend": api(),
    "GET /api/v1/keys": api(lists="key_id"),
    "POST /api/v1/keys": api(json={"name": "reporting", "scope": "read"}),
    "POST /api/v1/keys/{key_id}/revoke": api(),
    "POST /api/v1/public/{public_key}/chat": public(
        "visitors chat with the key on the customer's site; another account's "
        "conversation id starts a new conversation: test_a_visitor_cannot_continue_..."
    ),
    "POST /api/v1/public/{public_key}/messages/{message_id}/rating": public(
        "the visitor rates an answer of his conversation, named by its secret public id; "
        "anything else is the same 404: tests/answers/test_feedback.py"
    ),
    "GET /api/v1/public/{public_key}/widget": public("the widget's look, for the key's site"),
    # --- the panel ---------------------------------------------------------------------
    "MOUNT /panel/static": public("the panel's scripts, styles and icons"),
    "GET /panel": public("a redirect to the dashboard"),
    "GET /panel/{rest:path}": public("the not-found page for every other address"),
    "GET /panel/sign-up": public("signing up"),
    "POST /panel/sign-up": public("signing up"),
    "GET /panel/sign-in": public("signing in"),
    "POST /panel/sign-in": public("signing in"),
    "POST /panel/sign-out": panel(form={}, last=True),
    "GET /panel/password/forgot": public("asking for a reset link"),
    "POST /panel/password/forgot": public("asking for a reset link"),
    "GET /panel/password/reset": public("the emailed link's token decides"),
    "POST /panel/password/reset": public("the emailed link's token decides"),
    "GET /panel/invite/accept": public("the emailed link's token decides"),
    "POST /panel/invite/accept": public("the emailed link's token decides"),
    "GET /panel/settings/contact-email/confirm": public("the emailed link's token decides"),
    "POST /panel/settings/contact-email/confirm": public("the emailed link's token decides"),
    "GET /panel/verify-email": public("the emailed link's token decides"),
    "POST /panel/verify-email": public("the emailed link's token decides"),
    "POST /panel/verify-email/resend": panel(form={}),
    "GET /panel/dashboard": panel(),
    "GET /panel/figures": panel(),
    "POST /panel/tokens": panel(json={"packages": 1, "key": "window-key-0001"}, scripted=True),
    "GET /panel/billing": panel(),
    "POST /panel/billing/packages": panel(form={"packages": "2"}),
    "GET /panel/billing/cancel": panel(),
    "POST /panel/billing/cancel": panel(form={}),
    "GET /panel/billing/invoices/{invoice_id}": panel(),
    "GET /panel/billing/invoices/{invoice_id}.pdf": panel(),
    "GET /panel/billing/invoices/{invoice_id}/receipt.pdf": panel(),
    "POST /panel/billing/details": panel(form=TAKEN_OVER),
    "GET /panel/billing/invoices/{invoice_id}/pay": panel(),
    "GET /panel/billing/invoices/{invoice_id}/cancelled": panel(),
    "GET /panel/billing/invoices/{invoice_id}/state": panel(scripted=True),
    "POST /panel/billing/card": panel(form={}),
    "POST /panel/settings/surge-alerts": panel(
        form={"surge_multiple": "4", "surge_min_tokens": "2000"}
    ),
    "POST /panel/billing/portal": panel(form={}),
    "POST /panel/billing/auto-top-up": panel(
        form={"enabled": "on", "threshold": "7", "packages": "1", "monthly_cap": "1"}
    ),
    "GET /panel/usage": panel(query={"assistant": "assistant_id"}),
    "GET /panel/usage.csv": panel(query={"assistant": "assistant_id"}),
    "GET /panel/assistants": panel(),
    "GET /panel/assistants/new": panel(),
    "POST /panel/assistants/new": panel(form={"name": "Another"}),
    "GET /panel/assistants/{assistant_id}": panel(),
    "POST /panel/assistants/{assistant_id}": panel(form=TAKEN_OVER),
    "GET /panel/assistants/{assistant_id}/delete": panel(),
    "POST /panel/assistants/{assistant_id}/delete": panel(form={}),
    "GET /panel/assistants/{assistant_id}/embed": panel(),
    "GET /panel/assistants/{assistant_id}/rotate-key": panel(),
    "POST /panel/assistants/{assistant_id}/rotate-key": panel(form={}),
    "GET /panel/assistants/{assistant_id}/training": panel(),
    "GET /panel/assistants/{assistant_id}/files.json": panel(),
    "POST /panel/assistants/{assistant_id}/files": panel(files=UPLOAD, scripted=True),
    "POST /panel/assistants/{assistant_id}/files/{file_id}/delete": panel(form={}),
    "GET /panel/assistants/{assistant_id}/files/{file_id}/title": panel(),
    "POST /panel/assistants/{assistant_id}/files/{file_id}/title": panel(form={"title": "Taken"}),
    "GET /panel/assistants/{assistant_id}/embed/preview": panel(),
    "POST /panel/onboarding/dismiss": panel(form={}),
    "GET /panel/assistants/{assistant_id}/test": panel(),
    "POST /panel/assistants/{assistant_id}/test-chat": panel(
        json={"message": "What are the opening hours?"}, scripted=True
    ),
    "GET /panel/assistants/{assistant_id}/conversations": panel(
        cursor={"before": "conversation_id"}
    ),
    "GET /panel/assistants/{assistant_id}/conversations/{conversation_id}": panel(),
    "GET /panel/assistants/{assistant_id}/answers": panel(),
    "GET /panel/assistants/{assistant_id}/answers/new": panel(),
    "POST /panel/assistants/{assistant_id}/corrections": panel(form=CORRECTION),
    "GET /panel/assistants/{assistant_id}/corrections/{correction_id}": panel(),
    "POST /panel/assistants/{assistant_id}/corrections/{correction_id}": panel(form=CORRECTION),
    "POST /panel/assistants/{assistant_id}/corrections/{correction_id}/delete": panel(form={}),
    "GET /panel/settings": panel(),
    "POST /panel/settings/account": panel(form={"name": "Renamed", "timezone": "UTC"}),
    "POST /panel/settings/contact-email": panel(form={"email": "new-contact@example.org"}),
    "POST /panel/settings/contact-email/cancel": panel(form={}),
    "POST /panel/settings/password": panel(
        form={"current_password": "not the password", "new_password": "another long password"}
    ),
    "POST /panel/settings/team/invite": panel(
        form={"email": "new-member@example.org", "role": "member"}
    ),
    "POST /panel/settings/team/invitations/{invitation_id}/revoke": panel(form={}),
    "POST /panel/settings/team/{user_id}/role": panel(form={"role": "owner"}),
    "POST /panel/settings/team/{user_id}/remove": panel(form={}),
    "GET /panel/settings/webhooks": panel(),
    "POST /panel/settings/webhooks": panel(form={"url": "https://hooks.example.com/in"}),
    "GET /panel/settings/webhooks/{endpoint_id}": panel(),
    "POST /panel/settings/webhooks/{endpoint_id}": panel(
        form={"url": "https://hooks.example.com/taken", "description": "Taken over"}
    ),
    "POST /panel/settings/webhooks/{endpoint_id}/test": panel(form={}),
    "POST /panel/settings/webhooks/{endpoint_id}/rotate": panel(form={}),
    "POST /panel/settings/webhooks/{endpoint_id}/delete": panel(form={}),
    "POST /panel/settings/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend": panel(form={}),
    "GET /panel/settings/api-keys": panel(),
    "POST /panel/settings/api-keys": panel(form={"name": "reporting", "scope": "read"}),
    "POST /panel/settings/api-keys/{key_id}/revoke": panel(form={}),
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def app_routes(app: FastAPI) -> Iterator[Route]:
    """The API and panel routes of the app's own route table, one per method."""
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if not path.startswith(PREFIXES):
            continue
        params = tuple(route.param_convertors)
        if isinstance(route.original_route, Mount):
            yield Route("MOUNT", path, params)
            continue
        for method in sorted(route.methods or ()):
            if method != "HEAD":  # Starlette's HEAD is its GET
                yield Route(method, path, params)


def missing_rule_message(routes: list[Route]) -> str:
    """What a developer reads when a route has no rule: the lines to add."""
    lines = [
        "These routes have no entry in COVERAGE (tests/security/routes.py). Say how the "
        "tenant-isolation matrix calls each one; give a valid body with json=, form= or "
        'files=, or make it public("why anyone may call it"):',
        "",
    ]
    for route in routes:
        rule = "api()" if route.path.startswith("/api/") else "panel()"
        lines.append(f'    "{route.key}": {rule},')
    return "\n".join(lines + unknown_kinds_lines(routes))


def unknown_kinds_lines(routes: list[Route]) -> list[str]:
    unknown = sorted({p for r in routes for p in r.params if p not in ID_KINDS})
    if not unknown:
        return []
    return [
        "",
        "and say whose rows these path parameters name, in ID_KINDS (tests/security/routes.py):",
        *(f'    "{name}": IdKind(TheModel),' for name in unknown),
    ]
