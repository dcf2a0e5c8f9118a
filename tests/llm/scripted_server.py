"""A tiny OpenAI-compatible HTTP server on loopback that answers from a script.

Each request takes the next step of the script: fail with a status, answer
with a stream that ends, breaks or stalls, or answer in one JSON body. The
server records every request body so that tests can count attempts.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = Callable[["Handler", dict[str, Any]], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), **body})
            index = len(self.server.requests) - 1
        steps = self.server.steps
        step = steps[index] if index < len(steps) else status(500, "the script has no more steps")
        try:
            step(self, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up first, as some tests intend

    # --- what steps use -------------------------------------------------------

    def send_body(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self.send_response(code)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def event(self, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def end_events(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def drop_connection(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def pause(self, seconds: float) -> None:
        # Returns early when the server shuts down, so no test waits on it.
        self.server.stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, steps: Sequence[Step]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.steps = list(steps)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()


class ScriptedServer:
    def __init__(self, *steps: Step) -> None:
        self._server = _Server(steps)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._server.requests

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- steps --------------------------------------------------------------------


def status(code: int, message: str = "error", headers: dict[str, str] | None = None) -> Step:
    def step(handler: Handler, body: dict[str, Any]) -> None:
        handler.send_body(code, json.dumps({"error": {"message": message}}), headers)

    return step


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": "test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def stream(
    pieces: Sequence[str],
    *,
    finish_reason: str = "stop",
    usage: dict[str, int] | None = None,
    break_after: int | None = None,
    stall_after: int | None = None,
    end_quietly: bool = False,
) -> Step:
    """Stream ``pieces``; or drop the connection / stall after that many of them."""

    def step(handler: Handler, body: dict[str, Any]) -> None:
        handler.start_events()
        handler.event(chunk({"role": "assistant", "content": ""}))
        for index, piece in enumerate(pieces):
            if index == break_after:
                handler.drop_connection()
                return
            if index == stall_after:
                handler.pause(30)
                handler.drop_connection()
                return
            handler.event(chunk({"content": piece}))
        if end_quietly:  # a clean end of the body with no finish reason and no [DONE]
            handler.end_events()
            return
        handler.event(chunk({}, finish_reason))
        if usage is not None:
            handler.event(json.dumps({"id": "chatcmpl-test", "choices": [], "usage": usage}))
        handler.event("[DONE]")
        handler.end_events()

    return step


def answer(text: str, *, usage: dict[str, int] | None = None, finish_reason: str = "stop") -> Step:
    def step(handler: Handler, body: dict[str, Any]) -> None:
        message = {"role": "assistant", "content": text}
        response: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        }
        if usage is not None:
            response["usage"] = usage
        handler.send_body(200, json.dumps(response))

    return step


def slow(seconds: float, then: Step) -> Step:
    def step(handler: Handler, body: dict[str, Any]) -> None:
        handler.pause(seconds)
        then(handler, body)

    return step
