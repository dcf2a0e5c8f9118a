"""The attempt itself, against servers on loopback: one deadline for all of it, TLS
checked against the name while connecting to the checked address, HTTP or nothing."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chatmeter.webhooks import egress

BODY = b'{"id":"evt_1"}'


@contextmanager
def server(
    answer: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None
) -> Iterator[int]:
    """A one-connection-at-a-time server on 127.0.0.1 that runs ``answer`` per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                if tls is not None:
                    connection = tls.wrap_socket(connection, server_side=True)
                answer(connection)
            except OSError:
                pass
            finally:
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0].split(b":")[1])
    while len(body) < length:
        body += connection.recv(4096)
    return data


def post(url: str, timeout: float = 5.0) -> egress.Answer:
    return egress.post(url, body=BODY, headers={"X-Test": "1"}, timeout=timeout, allow_private=True)


def test_an_answer_a_byte_at_a_time_cannot_outlast_the_deadline() -> None:
    """Each byte comes well within a per-read timeout; only a deadline for the whole
    attempt ends it (without one this test would hang for an hour)."""
    released = threading.Event()

    def trickle(connection: socket.socket) -> None:
        read_request(connection)
        for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"z" * 36_000:
            if released.wait(0.05):
                return
            connection.sendall(bytes([byte]))

    with server(trickle) as port:
        try:
            with pytest.raises(egress.Failed, match=r"within the webhook timeout|timed out"):
                post(f"http://127.0.0.1:{port}/hook", timeout=1.0)
        finally:
            released.set()


def test_the_request_is_http_1_1_with_the_host_and_the_exact_body() -> None:
    seen: list[bytes] = []

    def ok(connection: socket.socket) -> None:
        seen.append(read_request(connection))
        connection.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    with server(ok) as port:
        answer = post(f"http://localhost:{port}/in?x=1")
    assert (answer.status, answer.snippet) == (204, "")
    [request] = seen
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /in?x=1 HTTP/1.1"
    assert f"Host: localhost:{port}".encode() in lines and b"X-Test: 1" in lines
    assert b"Connection: close" in lines and body == BODY


def test_something_that_is_not_http_is_a_failure() -> None:
    def junk(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    with server(junk) as port, pytest.raises(egress.Failed, match=r"HTTP/1\.x"):
        post(f"http://127.0.0.1:{port}/hook")


def test_a_closed_port_is_a_failure_not_a_hang() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(egress.Failed, match="ConnectionRefused"):
        post(f"http://127.0.0.1:{port}/hook")


# --- TLS ------------------------------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test authority, and a certificate it signed for ``localhost``."""
    folder = tmp_path_factory.mktemp("tls")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=Chatmeter test CA", "-keyout", str(folder / "ca.key"),
        "-out", str(folder / "ca.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(folder / "site.key"), "-out", str(folder / "site.csr"),
    )  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", str(folder / "site.csr"), "-CA", str(folder / "ca.pem"),
        "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", str(folder / "ext.cnf"), "-out", str(folder / "site.pem"),
    )  # fmt: skip
    return folder


def tls_server_context(folder: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "site.pem", folder / "site.key")
    return context


def answer_ok(connection: socket.socket) -> None:
    read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_tls_to_the_checked_address_is_verified_against_the_name(
    certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connected to 127.0.0.1, the certificate is checked for ``localhost``: trusted, it
    delivers; the same server under another name, or without the authority, is refused."""
    with server(answer_ok, tls_server_context(certificates)) as port:
        with pytest.raises(egress.Failed, match="CERTIFICATE_VERIFY_FAILED"):
            post(f"https://localhost:{port}/hook")  # an authority nobody trusts
        monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.pem"))
        assert post(f"https://localhost:{port}/hook") == egress.Answer(200, "ok")
        with pytest.raises(egress.Failed, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            post(f"https://127.0.0.1:{port}/hook")  # the certificate is not for this name
