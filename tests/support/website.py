"""A customer's website on its own loopback port, and the tag that embeds the widget."""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Website:
    """A customer's website on its own loopback port: path → HTML."""

    pages: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?", 1)[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.domain = f"127.0.0.1:{self.port}"  # as a customer lists it in allowed_domains
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, path: str, page: str) -> str:
        self.pages[path] = page
        return self.origin + path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def embed(api: str, public_key: str) -> str:
    """The one tag a customer puts on their site."""
    src = html.escape(f"{api}/widget.js")
    return f'<script src="{src}" data-assistant="{html.escape(public_key)}" async></script>'
