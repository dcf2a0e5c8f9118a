"""HTTP connections that keep the request already on its way when the server stops.

A web process stops gracefully on SIGTERM: when ``systemctl reload`` replaces it
(``chatmeter serve --workers N``, SIGHUP), at a deploy, at a scale-down. uvicorn then
stops accepting, lets running requests finish, and closes every connection that has
no request running. That includes one it accepted a moment ago whose request is
still in the socket's buffer, not yet parsed: the visitor's browser or the
customer's integration sees the connection cut with no answer, though the request
was sent on time (seen in the reload test: one request in about 150 cut).

``DrainingHttpToolsProtocol`` gives such a connection, one that has not yet
received a request, ``FIRST_REQUEST_GRACE`` seconds for it: a request that arrives is
answered and the connection then closed; one that does not is closed as before.
Connections kept alive after a response are closed at once, as uvicorn does: a
client reusing one may see it close, and HTTP has it retry (RFC 9112, 9.3.1).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FIRST_REQUEST_GRACE = 1.0  # seconds: a request sent is in the buffer well within it


class DrainingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, waiting for a new connection's first request when
    the server stops."""

    grace = FIRST_REQUEST_GRACE
    _draining = False

    def shutdown(self) -> None:
        fresh = getattr(self, "cycle", None) is None  # no request received on it yet
        if fresh and not self.transport.is_closing():
            if not self._draining:
                self._draining = True
                self.loop.call_later(self.grace, self._end_grace)
            return
        super().shutdown()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._draining:
            self.cycle.keep_alive = False  # one answer, then the connection closes

    def _end_grace(self) -> None:
        if not self.transport.is_closing():
            super().shutdown()  # closed if still idle, else after its response
