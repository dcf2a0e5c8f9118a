"""The payment gateway's webhook endpoint: ``POST /webhooks/stripe``.

Stripe signs each delivery; ``billing.webhooks`` refuses any it cannot verify
(400, nothing changed), applies each event at most once, and asks Stripe for the
objects rather than believing the payload. While Stripe cannot be asked, the
answer is 503 and Stripe delivers the event again later.
"""

from __future__ import annotations

import logging

import stripe
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from chatmeter.billing import webhooks
from chatmeter.web.deps import ContextDep

router = APIRouter(include_in_schema=False)
log = logging.getLogger("chatmeter.billing.webhooks")


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request, ctx: ContextDep) -> JSONResponse:
    payload = await request.body()  # BodySizeLimit caps it at CHATMETER_MAX_BODY_BYTES
    signature = request.headers.get("stripe-signature")
    try:
        outcome = await run_in_threadpool(webhooks.receive, ctx, payload, signature)
    except webhooks.InvalidEvent as exc:
        return JSONResponse(
            {"error": {"code": "invalid_signature", "message": f"refused: {exc}"}},
            status_code=400,
        )
    except stripe.StripeError as exc:
        log.warning("Stripe could not be asked about a webhook event: %s", exc)
        return JSONResponse(
            {"error": {"code": "unavailable", "message": "Stripe could not be reached; retry"}},
            status_code=503,
        )
    return JSONResponse({"received": True, "outcome": outcome.value})
