"""Webhook endpoints for the customer's own systems (``chatmeter.webhooks``).

The signing secret is in the answers that make it (create, rotate) only.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StrictBool, StrictStr

from chatmeter.web.deps import AccountDep, ContextDep, IdPath
from chatmeter.web.schemas import Strict
from chatmeter.webhooks import endpoints
from chatmeter.webhooks.disabling import DISABLE_AFTER
from chatmeter.webhooks.events import ALL, DESCRIPTIONS, SUBSCRIBABLE

router = APIRouter(tags=["webhooks"])

EventList = Annotated[
    list[Annotated[StrictStr, Field(max_length=40)]],
    Field(
        max_length=len(SUBSCRIBABLE) + 1,
        description=f'Event types to receive, or ["{ALL}"] for every type.',
    ),
]


class EndpointIn(Strict):
    url: Annotated[StrictStr, Field(max_length=2048, description="An https:// URL.")]
    events: EventList | None = None
    description: Annotated[StrictStr, Field(max_length=200)] = ""


class EndpointPatch(Strict):
    """The fields to change; a field left out keeps its value."""

    url: Annotated[StrictStr, Field(max_length=2048)] | None = None
    events: EventList | None = None
    description: Annotated[StrictStr, Field(max_length=200)] | None = None
    enabled: StrictBool | None = None


class EndpointOut(BaseModel):
    id: int
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why Chatmeter turned the endpoint off: every delivery failed for "
        f"{DISABLE_AFTER.days} days. Cleared when it is turned back on; null otherwise."
    )
    disabled_at: dt.datetime | None = Field(description="When Chatmeter turned it off.")
    created_at: dt.datetime
    updated_at: dt.datetime


class EndpointWithSecretOut(EndpointOut):
    secret: str = Field(description="Signs every delivery; shown in this answer only.")


class EventTypeOut(BaseModel):
    type: str
    description: str


class TestEventOut(BaseModel):
    event_id: str


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    event_type: str
    status: str = Field(description="pending, delivered or dead (gave up after its retries).")
    attempts: int
    last_status: int | None = Field(description="The endpoint's HTTP status at the last attempt.")
    last_error: str | None
    last_attempt_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime


@router.get("/webhook-event-types", response_model=list[EventTypeOut])
def event_types(_account_id: AccountDep) -> list[dict[str, str]]:
    """The event types an endpoint can receive."""
    return [{"type": t.value, "description": DESCRIPTIONS[t]} for t in SUBSCRIBABLE]


@router.get("/webhooks", response_model=list[EndpointOut])
def list_endpoints(ctx: ContextDep, account_id: AccountDep) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        return [
            endpoints.endpoint_dict(e)
            for e in endpoints.list_endpoints(session, account_id=account_id)
        ]


@router.post("/webhooks", response_model=EndpointWithSecretOut, status_code=201)
def create_endpoint(body: EndpointIn, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """Register an endpoint; its signing ``secret`` is in this answer only."""
    with ctx.db.uow() as uow:
        endpoint = endpoints.create(
            uow.session,
            account_id=account_id,
            url=body.url,
            events=body.events,
            description=body.description,
            allow_private=ctx.settings.webhook_allow_private_networks,
            now=ctx.clock.now(),
        )
        uow.commit()
        return endpoints.endpoint_dict(endpoint, with_secret=True)


@router.get("/webhooks/{endpoint_id}", response_model=EndpointOut)
def get_endpoint(endpoint_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        return endpoints.endpoint_dict(
            endpoints.get(session, account_id=account_id, endpoint_id=endpoint_id)
        )


@router.patch("/webhooks/{endpoint_id}", response_model=EndpointOut)
def update_endpoint(
    endpoint_id: IdPath, body: EndpointPatch, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """Change the URL, the event types, the description, or turn it off and on."""
    with ctx.db.uow() as uow:
        endpoint = endpoints.update(
            uow.session,
            account_id=account_id,
            endpoint_id=endpoint_id,
            allow_private=ctx.settings.webhook_allow_private_networks,
            now=ctx.clock.now(),
            url=body.url,
            events=body.events,
            description=body.description,
            enabled=body.enabled,
        )
        uow.commit()
        return endpoints.endpoint_dict(endpoint)


@router.delete("/webhooks/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> Response:
    """Remove the endpoint and its delivery log; what it was still owed is not sent."""
    with ctx.db.uow() as uow:
        endpoints.remove(uow.session, account_id=account_id, endpoint_id=endpoint_id)
        uow.commit()
    return Response(status_code=204)


@router.post("/webhooks/{endpoint_id}/rotate-secret", response_model=EndpointWithSecretOut)
def rotate_secret(endpoint_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """A new signing secret (in this answer only); the old one also signs for 24 hours."""
    with ctx.db.uow() as uow:
        endpoint = endpoints.rotate_secret(
            uow.session, account_id=account_id, endpoint_id=endpoint_id, now=ctx.clock.now()
        )
        uow.commit()
        return endpoints.endpoint_dict(endpoint, with_secret=True)


@router.post("/webhooks/{endpoint_id}/test", response_model=TestEventOut, status_code=202)
def send_test_event(endpoint_id: IdPath, ctx: ContextDep, account_id: AccountDep) -> dict[str, str]:
    """Queue a ``test`` event for this endpoint only; its delivery shows in the log."""
    with ctx.db.uow() as uow:
        event = endpoints.send_test(
            uow.session, account_id=account_id, endpoint_id=endpoint_id, now=ctx.clock.now()
        )
        uow.commit()
        return {"event_id": event.public_id}


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    endpoint_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> list[dict[str, Any]]:
    """The endpoint's 50 newest deliveries, newest first: the delivery log."""
    with ctx.db.read() as session:
        return endpoints.deliveries(session, account_id=account_id, endpoint_id=endpoint_id)


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend",
    response_model=DeliveryOut,
)
def resend_delivery(
    endpoint_id: IdPath, delivery_id: IdPath, ctx: ContextDep, account_id: AccountDep
) -> dict[str, Any]:
    """Send a delivery again now, with a fresh set of attempts."""
    with ctx.db.uow() as uow:
        row = endpoints.resend(
            uow.session,
            account_id=account_id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            now=ctx.clock.now(),
        )
        uow.commit()
        return row
