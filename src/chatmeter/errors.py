"""One exception tree; each error knows its HTTP status and a stable code.

    ChatmeterError (500 internal)
    ├── InvalidInput (422 invalid_input)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    │   └── InsufficientScope (403 insufficient_scope)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    │   ├── IdempotencyConflict (409 idempotency_conflict)
    │   ├── HoldNotYours (409 hold_not_yours)
    │   └── ConversationFull (409 conversation_full)
    ├── InsufficientTokens (402 insufficient_tokens)
    ├── PaymentFailed (402 payment_failed)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── QuotaExceeded (403 quota_exceeded): an account's training files, bytes or passages
    ├── RateLimited (429 rate_limited)
    ├── Unavailable (503 unavailable)
    │   └── Busy (503 busy, with Retry-After)
    └── ProviderError (502 provider_error) and its kind, see chatmeter.llm.base

The web layer maps them to JSON in one handler; the CLI prints the message and
exits with status 1.
"""

from __future__ import annotations


class ChatmeterError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        # HTTP headers the answer carries (e.g. Retry-After); the web layer sends them.
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(ChatmeterError):
    status_code = 422
    code = "invalid_input"


class Unauthorized(ChatmeterError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ChatmeterError):
    """Known caller, not allowed: a member at an owner's form, an unverified email."""

    status_code = 403
    code = "forbidden"


class InsufficientScope(Forbidden):
    """An API key whose scope does not cover the request (a read-only key writing)."""

    code = "insufficient_scope"


class NotFound(ChatmeterError):
    status_code = 404
    code = "not_found"


class Conflict(ChatmeterError):
    status_code = 409
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class HoldNotYours(Conflict):
    """A chat turn's hold reached through the API, or the other way round."""

    code = "hold_not_yours"


class ConversationFull(Conflict):
    """A visitor's conversation asked all the questions its assistant allows one."""

    code = "conversation_full"


class InsufficientTokens(ChatmeterError):
    status_code = 402
    code = "insufficient_tokens"


class PaymentFailed(ChatmeterError):
    status_code = 402
    code = "payment_failed"


class PayloadTooLarge(ChatmeterError):
    status_code = 413
    code = "payload_too_large"


class QuotaExceeded(ChatmeterError):
    """The account keeps as much as the operator allows it (``CHATMETER_QUOTA_*``)."""

    status_code = 403
    code = "quota_exceeded"


class RateLimited(ChatmeterError):
    status_code = 429
    code = "rate_limited"


class Unavailable(ChatmeterError):
    """What a visitor hears whenever an assistant cannot answer: never why.

    An assistant that does not exist, an account out of tokens and a broken
    model all look the same from outside, so a visitor can learn nothing
    about the customer's balance.
    """

    status_code = 503
    code = "unavailable"

    def __init__(self) -> None:
        super().__init__("This assistant is not available right now. Please try again later.")


class Busy(Unavailable):
    """Too many answers are being generated or waiting: come back in ``retry_after`` seconds.

    Like ``Unavailable`` it says nothing about the customer; nothing was reserved.
    """

    code = "busy"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__()
        self.message = "This assistant is busy right now. Please try again in a moment."
        self.args = (self.message,)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}
