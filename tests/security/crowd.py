"""Visitors streaming answers over real HTTP, and a grip on the bundled model to hold it."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from chatmeter.context import Context
from chatmeter.llm import local
from tests.chat.shop import QUESTION


@contextmanager
def model_held(ctx: Context) -> Iterator[None]:
    """Hold the bundled model as a long generation would: nobody else generates meanwhile."""
    provider = ctx.provider("local", "")
    while hasattr(provider, "inner"):  # a test's recording wrapper
        provider = provider.inner
    assert isinstance(provider, local.LocalProvider)
    grip = provider._model().lock
    grip.acquire()
    try:
        yield
    finally:
        grip.release()


@dataclass
class Visit:
    """One visitor's streamed chat: the answer's status as soon as it comes, then its events.

    ``leave()`` shuts the connection from outside, as a visitor closing the tab does,
    whether the answer is waiting for the model or streaming.
    """

    url: str
    body: dict[str, object] = field(default_factory=lambda: {"message": QUESTION})
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    error: BaseException | None = None
    answered: threading.Event = field(default_factory=threading.Event)  # the status arrived
    ended: threading.Event = field(default_factory=threading.Event)
    _left: bool = False
    _connection: http.client.HTTPConnection | None = None

    def start(self) -> Visit:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def leave(self) -> None:
        self._left = True
        connection = self._connection
        if connection is not None and connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        where = urlsplit(self.url)
        try:
            self._connection = http.client.HTTPConnection(where.netloc, timeout=300)
            self._connection.request(
                "POST",
                where.path,
                body=json.dumps(self.body),
                headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
            )
            response = self._connection.getresponse()
            self.status = response.status
            self.headers = {name.lower(): value for name, value in response.getheaders()}
            self.answered.set()
            while line := response.readline():
                self.text += line.decode()
        except BaseException as exc:  # reported by the test, not lost in a thread
            if not self._left:
                self.error = exc
        finally:
            if self._connection is not None:
                self._connection.close()
            self.answered.set()
            self.ended.set()

    @property
    def events(self) -> list[str]:
        lines = self.text.splitlines()
        return [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
