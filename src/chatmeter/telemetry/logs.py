"""Logs an operator can search: one JSON object a line, each with its request's id.

``CHATMETER_LOG_FORMAT=json`` turns them on (``configure``). The request id is set
per request by the web (``chatmeter.web.observability``) in a context variable,
so every line logged while the request is served (in the event loop, in the
thread pool, in the chat turn's generation thread, which is handed the context)
carries it without being passed around. A chat turn logs its hold and ledger
entry ids under it: ``grep`` one request id and its tokens are accounted for.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import sys
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chatmeter_request_id", default=None
)
# What a proxy's X-Request-Id may look like to be reused: short, and safe in a header and a log.
_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
# The attributes every LogRecord has: anything else was passed in ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def new_request_id() -> str:
    return secrets.token_hex(16)


def usable_request_id(value: str | None) -> str | None:
    """A proxy's request id if it is one we can echo and log safely, else None."""
    if value and _REQUEST_ID_SHAPE.match(value):
        return value
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            data["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "request_id":
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class RequestIdFilter(logging.Filter):
    """Puts the request id on text records too (``%(request_id)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def make_handler(fmt: str, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def configure(fmt: str, level: str) -> None:
    """Send Chatmeter's and uvicorn's logs to standard error in ``fmt`` (text or json)."""
    handler = make_handler(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
