from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from chatmeter.config import Env, Settings
from chatmeter.notifications.mailers import (
    FileMailer,
    MailerError,
    SmtpMailer,
    make_mailer,
)

from .smtp_server import PASSWORD, USERNAME, SmtpServer


def sample(
    subject: str = "Your token balance is low", to: str = "owner@acme.example"
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Chatmeter <no-reply@chatmeter.localhost>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("812 of 5,000 tokens left.\n")
    message.add_alternative("<p>812 of 5,000 tokens left.</p>\n", subtype="html")
    return message


def mailer_for(server: SmtpServer, **options: object) -> SmtpMailer:
    return SmtpMailer(server.host, server.port, timeout=5, **options)  # type: ignore[arg-type]


def test_file_mailer_writes_parseable_messages_in_order(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path / "mail")
    for number in range(3):
        mailer.send(sample(subject=f"Message {number}"))

    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml"] * 3  # no temporary file left behind
    parsed = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert [m["Subject"] for m in parsed] == ["Message 0", "Message 1", "Message 2"]
    for message in parsed:
        assert isinstance(message, EmailMessage)
        assert message["To"] == "owner@acme.example"
        text, html = message.get_body(("plain",)), message.get_body(("html",))
        assert text is not None and "5,000 tokens" in text.get_content()
        assert html is not None and "<p>812 of 5,000" in html.get_content()


def test_file_mailer_failure_is_server_wide(tmp_path: Path) -> None:
    blocker = tmp_path / "mail"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(MailerError) as failure:
        FileMailer(blocker).send(sample())
    assert failure.value.server_wide and not failure.value.permanent


def test_smtp_mailer_delivers(smtp_server: SmtpServer) -> None:
    mailer_for(smtp_server).send(sample())
    [received] = smtp_server.inbox.messages
    assert received["Subject"] == "Your token balance is low"
    assert received.get_body(("html",)) is not None


def test_smtp_mailer_logs_in(tmp_path: Path) -> None:
    server = SmtpServer(auth=True)
    server.start()
    try:
        mailer_for(server, username=USERNAME, password=PASSWORD).send(sample())
        assert len(server.inbox.messages) == 1

        with pytest.raises(MailerError) as failure:
            mailer_for(server, username=USERNAME, password="wrong").send(sample())
        # A wrong password is the operator's to fix: every message waits for it.
        assert failure.value.code == 535
        assert failure.value.server_wide and not failure.value.permanent
        assert len(server.inbox.messages) == 1
    finally:
        server.stop()


def test_refused_connection_is_temporary_and_server_wide(
    stopped_smtp_server: SmtpServer,
) -> None:
    with pytest.raises(MailerError) as failure:
        mailer_for(stopped_smtp_server).send(sample())
    assert failure.value.server_wide
    assert not failure.value.permanent
    assert failure.value.code is None


def test_refused_recipient_is_permanent(smtp_server: SmtpServer) -> None:
    smtp_server.inbox.refuse_rcpt = "550 5.1.1 No such user"
    with pytest.raises(MailerError) as failure:
        mailer_for(smtp_server).send(sample())
    assert failure.value.permanent and not failure.value.server_wide
    assert failure.value.code == 550
    assert "No such user" in str(failure.value)


def test_temporary_refusal_is_not_permanent(smtp_server: SmtpServer) -> None:
    smtp_server.inbox.refuse_data = "451 4.3.0 Try again later"
    with pytest.raises(MailerError) as failure:
        mailer_for(smtp_server).send(sample())
    assert not failure.value.permanent and not failure.value.server_wide
    assert failure.value.code == 451


def test_make_mailer_follows_settings(tmp_path: Path) -> None:
    base = Settings(_env_file=None, env=Env.TEST, data_dir=tmp_path)
    file_mailer = make_mailer(base)
    assert isinstance(file_mailer, FileMailer)
    assert file_mailer.directory == tmp_path / "mail"

    smtp = make_mailer(
        base.model_copy(
            update={
                "mailer": "smtp",
                "smtp_host": "mail.example.com",
                "smtp_port": 465,
                "smtp_tls": "tls",
                "smtp_username": "u",
                "smtp_password": "p",
                "smtp_timeout": 3.0,
            }
        )
    )
    assert isinstance(smtp, SmtpMailer)
    assert (smtp.host, smtp.port, smtp.tls, smtp.username, smtp.password, smtp.timeout) == (
        "mail.example.com",
        465,
        "tls",
        "u",
        "p",
        3.0,
    )
