"""Where finished emails go: an SMTP server, a directory of ``.eml`` files, or memory.

Every mailer has one method, ``send(message)``, which returns once the message
is accepted and raises ``MailerError`` otherwise:

    Exception
    └── MailerError(message, permanent: bool, server_wide: bool, code: int | None)

``permanent``
    The server refused *this message* for good (a 5xx reply to its recipient
    or its data). Resending the same message will not help; the outbox retries
    it only a few times, then marks it dead.
``server_wide``
    The failure happened before the message was handed over: the server is
    unreachable, TLS or login failed, the sender address is refused, or the
    mail directory cannot be written. Every other message would fail the same
    way, so the worker stops its batch. These failures are never permanent,
    even with a 5xx code: they are the operator's to fix (a wrong password,
    a wrong ``CHATMETER_MAIL_FROM``), and the messages should wait for the fix.
``code``
    The SMTP reply code when there was one (``None`` for refused connections,
    timeouts, disconnects and file errors).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol

from chatmeter.config import Settings


class MailerError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        server_wide: bool = False,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.server_wide = server_wide
        self.code = code


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class FileMailer:
    """Writes each message to ``directory`` as an ``.eml`` file, for local use and demos.

    Names start with the UTC time of writing, so ``ls`` lists them in order.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{secrets.token_hex(4)}.eml"
        partial: Path | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Written under a hidden temporary name and renamed, so a reader
            # never sees half a message.
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=".", suffix=".tmp", delete=False
            ) as handle:
                partial = Path(handle.name)
                handle.write(message.as_bytes())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.directory / name)
        except OSError as exc:
            if partial is not None:
                with contextlib.suppress(OSError):
                    partial.unlink(missing_ok=True)
            raise MailerError(f"cannot write {name}: {exc}", server_wide=True) from exc


class MemoryMailer:
    """Keeps messages in a list; for tests of code that sends email."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            self.messages.append(message)


class SmtpMailer:
    """Sends through an SMTP server, one connection per message.

    A connection per message keeps failures independent and is plenty for
    transactional volume (a few emails per account per month).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: Literal["none", "starttls", "tls"] = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.password = password
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        smtp = self._open()
        try:
            try:
                smtp.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                raise MailerError(
                    f"recipients refused: {_describe(exc.recipients)}",
                    permanent=all(_is_permanent(code) for code in codes),
                    code=codes[0] if codes else None,
                ) from exc
            except smtplib.SMTPSenderRefused as exc:
                raise _reply_error("sender refused", exc, server_wide=True) from exc
            except smtplib.SMTPResponseException as exc:
                raise _reply_error("message refused", exc, server_wide=False) from exc
            except (smtplib.SMTPException, OSError) as exc:
                raise MailerError(f"sending failed: {exc!r}") from exc
        finally:
            _close_quietly(smtp)

    def _open(self) -> smtplib.SMTP:
        """Connect, secure and log in; every failure here is the server's, not the message's."""
        smtp: smtplib.SMTP | None = None
        try:
            if self.tls == "tls":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            return smtp
        except smtplib.SMTPResponseException as exc:
            if smtp is not None:
                _close_quietly(smtp)
            raise _reply_error(f"{self.host}:{self.port}", exc, server_wide=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            if smtp is not None:
                _close_quietly(smtp)
            raise MailerError(f"{self.host}:{self.port}: {exc!r}", server_wide=True) from exc


def make_mailer(settings: Settings) -> Mailer:
    if settings.mailer == "smtp":
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout,
        )
    return FileMailer(settings.mail_path)


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


def _reply_error(
    what: str, exc: smtplib.SMTPResponseException, *, server_wide: bool
) -> MailerError:
    return MailerError(
        f"{what}: {exc.smtp_code} {_text(exc.smtp_error)}".strip(),
        permanent=not server_wide and _is_permanent(exc.smtp_code),
        server_wide=server_wide,
        code=exc.smtp_code,
    )


def _describe(recipients: Mapping[str, tuple[int, bytes | str]]) -> str:
    return "; ".join(
        f"{address}: {code} {_text(reply)}" for address, (code, reply) in recipients.items()
    )


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _close_quietly(smtp: smtplib.SMTP) -> None:
    # Once the server has accepted the message, a failed QUIT must not turn
    # into an error: the outbox would send the message again.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
