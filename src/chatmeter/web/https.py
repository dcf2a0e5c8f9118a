"""HTTP Strict Transport Security: under https, every response asks browsers to come
back over https only, so that a network attacker cannot strip TLS from a later visit
and read a session cookie or a form.

Only when ``CHATMETER_BASE_URL`` is https (a plain-http install, a laptop, must not
pin itself). Subdomains are not included: they may belong to other services of the
operator.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = (b"strict-transport-security", b"max-age=31536000")


class StrictTransportSecurity:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), HSTS]
            await send(message)

        await self.app(scope, receive, with_hsts)
