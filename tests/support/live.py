"""The real app served by uvicorn on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from chatmeter.web.app import SERVER_OPTIONS


class LiveServer:
    """``with LiveServer(app) as server:`` — requests go to ``server.url``."""

    def __init__(self, app: Any = None, *, factory: Callable[[str], Any] | None = None) -> None:
        """``app``, or the app ``factory`` makes knowing the server's own URL (its base URL)."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        if factory is not None:
            app = factory(self.url)
        assert app is not None, "give the app, or a factory that makes it"
        self.app = app
        options = SERVER_OPTIONS | {"http": "h11"}  # as `chatmeter serve` runs it, on h11
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", ws="none", access_log=False, **options
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
