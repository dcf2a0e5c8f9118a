"""The real app under uvicorn on a loopback port, and a client that speaks raw HTTP.

A raw client can do what an attacker does and ``httpx`` won't: declare a body
it never sends, or send half of one and wait. A server that waits for the rest
never answers, so the client's read times out and the test fails.

``BodyProbe`` sits just inside the app's own middleware and counts the body
bytes that reach the routes: what the server really read on their behalf.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ANSWER_TIMEOUT = 30.0  # a server that answers at all answers in milliseconds


@dataclass
class BodyCount:
    received: int = 0
    requests: int = 0


class BodyProbe:
    """Counts the request body bytes handed to the routes (inside the body limit)."""

    def __init__(self, app: ASGIApp, *, count: BodyCount) -> None:
        self.app = app
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.count.requests += 1

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.count.received += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def probe(app: FastAPI) -> BodyCount:
    """Install a ``BodyProbe`` as the innermost of the app's own middleware."""
    count = BodyCount()
    app.user_middleware.append(Middleware(BodyProbe, count=count))
    return count


class LiveServer:
    """The app on a free loopback port, served by uvicorn in a thread."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", ws="none", http="h11", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:  # uvicorn offers no event to wait on
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(port: int, head: bytes, body: Iterable[bytes] = ()) -> Answer:
    """Send ``head`` and ``body``, then read the answer without sending anything more."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        sock.sendall(head)
        for piece in body:
            sock.sendall(piece)
        return _read_answer(sock)


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        received = sock.recv(65536)
        if not received:
            raise ConnectionError(f"the server closed without answering: {data!r}")
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        received = sock.recv(65536)
        if not received:
            break
        body += received
    return Answer(int(status_line.split()[1]), headers, body[:length])


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``Transfer-Encoding: chunked`` framing, without the final empty chunk."""
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


@dataclass
class Multipart:
    """A multipart/form-data body built as it is sent, so the client holds none of it."""

    boundary: str = "chatmeter-test-boundary-7d1f"
    _pieces: list[tuple[int, Iterable[bytes]]] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def field(self, name: str, value: str) -> Multipart:
        self._add(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
        return self

    def file(self, name: str, filename: str, content: Iterable[bytes], size: int) -> Multipart:
        self._add(self.file_head(name, filename))
        self._pieces.append((size, content))
        self._add(b"\r\n")
        return self

    def file_head(self, name: str, filename: str) -> bytes:
        return (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()

    def end(self) -> Multipart:
        self._add(f"--{self.boundary}--\r\n".encode())
        return self

    @property
    def length(self) -> int:
        return sum(size for size, _ in self._pieces)

    def __iter__(self) -> Iterator[bytes]:
        for _, content in self._pieces:
            yield from content

    def _add(self, data: bytes) -> None:
        self._pieces.append((len(data), [data]))


def text_blocks(size: int, *, seed: int = 0, block: int = 64 * 1024) -> Iterator[bytes]:
    """``size`` bytes of distinct lines of text, made as they are sent."""
    line_number = 0
    sent = 0
    buffer = b""
    while sent < size:
        while len(buffer) < block:
            buffer += f"Line {seed}-{line_number}: parcels leave the shop every morning.\n".encode()
            line_number += 1
        piece = buffer[: min(block, size - sent)]
        buffer = buffer[len(piece) :]
        sent += len(piece)
        yield piece
