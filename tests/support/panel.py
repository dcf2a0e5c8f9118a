"""A browser-like client for the panel: it keeps cookies and reads each page's CSRF token."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from chatmeter.context import Context
from chatmeter.notifications.models import OutboxMessage
from chatmeter.web.app import create_app

PASSWORD = "a long enough password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Panel:
    client: TestClient

    def csrf(self, path: str = "/panel/sign-in") -> str:
        match = CSRF.search(self.client.get(path).text)
        assert match, f"no CSRF token on {path}"
        return match[1]

    def post(self, path: str, data: dict[str, Any], *, page: str | None = None) -> Response:
        token = self.csrf(page or path)
        return self.client.post(path, data={"csrf_token": token} | data, follow_redirects=False)

    def sign_up(
        self, email: str = "owner@example.com", *, verify: bool = True, **fields: Any
    ) -> Response:
        """Sign up, and (unless ``verify=False``) open the emailed verification link."""
        data = {"email": email, "password": PASSWORD, "name": "Shop", "timezone": "UTC"}
        response = self.post("/panel/sign-up", data | fields)
        if verify and response.status_code == 303:
            confirmed = self.verify_email(email)
            assert confirmed.status_code == 303, confirmed.text
        return response

    def verify_email(self, email: str = "owner@example.com") -> Response:
        """Press the button of the latest verification link emailed to ``email``."""
        ctx: Context = self.client.app.state.ctx  # type: ignore[attr-defined]
        with ctx.db.read() as session:
            message = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.kind == "verify_email")
                .order_by(OutboxMessage.id.desc())
            ).first()
        assert message is not None and message.to_address.lower() == email.lower()
        token = json.loads(message.context)["token"]
        return self.post("/panel/verify-email", {"token": token}, page="/panel/password/forgot")

    def sign_in(self, email: str = "owner@example.com", password: str = PASSWORD) -> Response:
        return self.post("/panel/sign-in", {"email": email, "password": password})

    def buy(
        self, packages: Any, key: str = "window-key-0001", token: str | None = None
    ) -> Response:
        token = self.csrf("/panel/dashboard") if token is None else token
        return self.client.post(
            "/panel/tokens",
            json={"packages": packages, "key": key},
            headers={"X-CSRF-Token": token},
        )


def new_panel(ctx: Context) -> Panel:
    return Panel(TestClient(create_app(ctx), base_url="http://127.0.0.1"))
