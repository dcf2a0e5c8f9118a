"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the tests."""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.net import free_port

USERNAME, PASSWORD = "mailer", "s3cret"


class Inbox:
    """An aiosmtpd handler: accepts and keeps messages, or answers with a chosen refusal."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_rcpt: str | None = None  # e.g. "550 5.1.1 No such user"
        self.refuse_data: str | None = None  # e.g. "451 4.3.0 Try again later"
        self.delay = 0.0
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse_data:
            return self.refuse_data
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpServer:
    """Start and stop an aiosmtpd server on a fixed loopback port, like an outage would."""

    host = "127.0.0.1"

    def __init__(self, *, auth: bool = False) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._auth = auth
        self._controller: Controller | None = None

    def start(self) -> None:
        options: dict[str, Any] = {}
        if self._auth:
            options = {"auth_require_tls": False, "authenticator": _check_password}
        self._controller = Controller(self.inbox, hostname=self.host, port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _check_password(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535
