"""Ids that leave the server are never handed to something else, and a session can only
ever open the very user it was issued to (issue #8, item 2).

Reproduced as an attacker would, over HTTP against the real app, on SQLite (the
default database) and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatmeter.accounts.models import User
from chatmeter.context import Context
from chatmeter.panel import auth
from chatmeter.training import service as training
from chatmeter.training.models import Chunk
from tests.panel.test_password_reset import emails, figures, signed_in
from tests.support.api import Caller
from tests.support.panel import PASSWORD, new_panel

ACCEPT = "/panel/invite/accept"
SECRET = b"Refunds\n\nAlice's secret refund code is 4711. Tell it to nobody.\n" * 3


def _user_id(ctx: Context, email: str) -> int:
    with ctx.db.read() as session:
        found = session.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def test_a_removed_members_cookie_opens_nobody_elses_account(ctx: Context) -> None:
    # The owner signs up and invites a member, who accepts in a browser of their own.
    panel = new_panel(ctx)
    assert panel.sign_up("owner@shop.example").status_code == 303
    invited = panel.post(
        "/panel/settings/team/invite",
        {"email": "member@shop.example", "role": "member"},
        page="/panel/settings",
    )
    assert invited.status_code == 303
    token = figures(emails(ctx, "team_invitation")[-1])["token"]
    member = new_panel(ctx)
    joined = member.post(ACCEPT, {"token": token, "password": PASSWORD}, page="/panel/sign-in")
    assert joined.status_code == 303
    kept = member.client.cookies.get(auth.SESSION_COOKIE)
    assert kept and signed_in(member)
    member_id = _user_id(ctx, "member@shop.example")

    # The owner removes the member.
    removed = panel.post(f"/panel/settings/team/{member_id}/remove", {}, page="/panel/settings")
    assert removed.status_code == 303
    assert not signed_in(member)

    # A stranger signs up next.
    stranger = new_panel(ctx)
    assert stranger.sign_up("stranger@elsewhere.example", name="Elsewhere").status_code == 303
    assert _user_id(ctx, "stranger@elsewhere.example") != member_id

    # The kept cookie opens nothing: not the stranger's dashboard, not any other page.
    thief = new_panel(ctx)
    thief.client.cookies.set(auth.SESSION_COOKIE, kept)
    for path in ("/panel/dashboard", "/panel/settings", "/panel/billing"):
        response = thief.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/panel/sign-in"
    assert "Elsewhere" not in thief.client.get("/panel/dashboard").text


def test_a_removed_members_reset_link_does_not_swallow_the_next_reset_email(
    ctx: Context,
) -> None:
    """Emails are de-duplicated by the id of their link (``password_reset:<id>``): a link's
    id given again to a new link would make the outbox drop the new email as a repeat."""
    owner = new_panel(ctx)
    assert owner.sign_up("owner@shop.example").status_code == 303
    owner.post(
        "/panel/settings/team/invite",
        {"email": "member@shop.example", "role": "member"},
        page="/panel/settings",
    )
    token = figures(emails(ctx, "team_invitation")[-1])["token"]
    member = new_panel(ctx)
    member.post(ACCEPT, {"token": token, "password": PASSWORD}, page="/panel/sign-in")
    member.post("/panel/password/forgot", {"email": "member@shop.example"})
    member_id = _user_id(ctx, "member@shop.example")
    owner.post(f"/panel/settings/team/{member_id}/remove", {}, page="/panel/settings")

    # The owner forgot their password: the email must be queued like any other.
    new_panel(ctx).post("/panel/password/forgot", {"email": "owner@shop.example"})
    sent = [message.to_address for message in emails(ctx, "password_reset")]
    assert sent == ["member@shop.example", "owner@shop.example"]


@pytest.mark.model
def test_a_deleted_files_training_never_lands_in_another_accounts_new_file(
    ctx: Context, alice: Caller, bob: Caller
) -> None:
    """The training job re-reads its file by id when it stores the passages. Alice deletes
    her file while it is processed and Bob uploads one: Bob's file must not get the id,
    and with it Alice's passages."""
    helper = alice.new_assistant()
    sent = alice.client.post(
        f"/api/v1/assistants/{helper['id']}/files",
        files={"files": ("secret.txt", SECRET, "text/plain")},
    )
    assert sent.status_code == 201
    file_id = sent.json()[0]["id"]
    bobs_helper = bob.new_assistant()
    bobs: list[int] = []

    def meanwhile(percent: int) -> None:
        if percent == 20 and not bobs:
            gone = alice.client.delete(f"/api/v1/assistants/{helper['id']}/files/{file_id}")
            assert gone.status_code == 204
            upload = bob.client.post(
                f"/api/v1/assistants/{bobs_helper['id']}/files",
                files={"files": ("hello.txt", b"Our shop opens at nine.\n" * 3, "text/plain")},
            )
            assert upload.status_code == 201
            bobs.append(upload.json()[0]["id"])

    assert training.claim_file(ctx, file_id=file_id)
    assert training.process_file(ctx, file_id=file_id, on_progress=meanwhile) is False
    (bobs_file,) = bobs
    assert bobs_file != file_id
    shown = bob.client.get(f"/api/v1/assistants/{bobs_helper['id']}/files/{bobs_file}").json()
    assert shown["status"] == "queued" and shown["chunks"] == 0
    with ctx.db.read() as session:
        texts = session.scalars(select(Chunk.text).where(Chunk.assistant_id == bobs_helper["id"]))
        assert not [text for text in texts if "4711" in text]
