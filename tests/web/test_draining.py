"""A stopping web process answers the request already on its way (``web.draining``).

The order of events is forced, not raced: a connection is accepted and the server is
told to stop before the request's bytes are sent. uvicorn's own protocol cuts that
connection; the draining one answers it and then closes it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chatmeter.web.app import SERVER_OPTIONS
from chatmeter.web.draining import FIRST_REQUEST_GRACE, DrainingHttpToolsProtocol

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})


def wait_until(what: str, check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {seconds} s")
        time.sleep(0.005)


@contextmanager
def serving(protocol: type) -> Iterator[tuple[uvicorn.Server, int]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(hello, lifespan="off", log_config=None, http=protocol)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_until("the server starting", lambda: server.started)
        yield server, port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


def answer_after_stop(protocol: type) -> bytes:
    """Connect, stop the server once the connection is accepted, then send the request:
    what comes back before the connection closes."""
    with serving(protocol) as (server, port), socket.create_connection(("127.0.0.1", port)) as c:
        wait_until("the connection accepted", lambda: len(server.server_state.connections) == 1)
        server.should_exit = True
        # Stopping closes the listener, then asks every connection to shut down, in one
        # step of the event loop: once the listener is closed, ours has been asked.
        wait_until(
            "the server stopping",
            lambda: bool(server.servers) and not any(s.is_serving() for s in server.servers),
        )
        c.settimeout(Patient.grace + 10)
        received = b""
        try:
            c.sendall(REQUEST)
            while chunk := c.recv(4096):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # cut: what came before is the answer
        return received


class Patient(DrainingHttpToolsProtocol):
    """The same, with a grace no busy machine outlasts between the test's stop and send:
    what is tested is that the request is waited for, not how long."""

    grace = 60.0


def test_the_server_runs_with_the_draining_protocol() -> None:
    assert SERVER_OPTIONS["http"] is DrainingHttpToolsProtocol


def test_a_request_sent_as_the_server_stops_is_answered() -> None:
    received = answer_after_stop(Patient)
    assert received.startswith(b"HTTP/1.1 200 OK"), received
    assert received.endswith(b"answered\r\n0\r\n\r\n")  # the whole body
    assert b"connection: close" in received.lower()  # and then the connection closes


def test_uvicorns_own_protocol_cuts_it() -> None:
    """What the draining protocol is for: without it the same request gets nothing."""
    assert answer_after_stop(HttpToolsProtocol) == b""


def test_an_idle_new_connection_is_closed_after_the_grace() -> None:
    with serving(DrainingHttpToolsProtocol) as (server, port):
        with socket.create_connection(("127.0.0.1", port)) as c:
            wait_until("the connection accepted", lambda: len(server.server_state.connections) == 1)
            server.should_exit = True
            c.settimeout(FIRST_REQUEST_GRACE + 10)
            assert c.recv(4096) == b""  # closed by the server, with nothing sent
        assert server.server_state.connections == set()
