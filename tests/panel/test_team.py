"""The team: invitations by email, accepting them, roles, removal, and the rules that
keep an owner on every account and each person on one account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from chatmeter.accounts import links, team
from chatmeter.accounts.models import EmailLink, LinkPurpose, Role, User
from chatmeter.context import Context
from chatmeter.errors import Conflict, InvalidInput, NotFound
from tests.notifications.smtp_server import SmtpServer
from tests.panel.test_password_reset import (
    deliver_over_smtp,
    emails,
    figures,
    link_in,
    link_path,
    signed_in,
    user,
)
from tests.panel.test_settings import add_member
from tests.support.panel import PASSWORD, Panel, new_panel

ACCEPT = "/panel/invite/accept"
MANAGE_REFUSED = "Only the account&#39;s owner can manage the team."


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def invite(panel: Panel, email: Any, role: Any = "member") -> Any:
    data = {"email": email, "role": role}
    return panel.post("/panel/settings/team/invite", data, page="/panel/settings")


def accept(panel: Panel, path: str, password: str = PASSWORD) -> Any:
    token = path.split("token=", 1)[1]
    data = {"token": token, "password": password}
    return panel.post(ACCEPT, data, page="/panel/password/forgot")


def team_action(panel: Panel, user_id: Any, what: str, **fields: Any) -> Any:
    return panel.post(f"/panel/settings/team/{user_id}/{what}", fields, page="/panel/settings")


def people(ctx: Context) -> dict[str, str]:
    with ctx.db.read() as session:
        return {u.email: u.role for u in session.scalars(select(User))}


def invite_in_db(ctx: Context, account_id: int, email: str, role: str = "member") -> EmailLink:
    with ctx.db.uow() as uow:
        row = team.invite(
            uow.session,
            account_id=account_id,
            invited_by="owner@example.com",
            email=email,
            role=role,
            now=ctx.clock.now(),
        )
        uow.commit()
    return row


# --- the rules, as functions ------------------------------------------------------------


@pytest.mark.parametrize("value", ["owner", " Member ", "MEMBER"])
def test_a_role_is_owner_or_member(value: str) -> None:
    assert team.parse_role(value) in (Role.OWNER, Role.MEMBER)


@pytest.mark.parametrize("value", ["admin", "", None, 1, ["owner"], "owner; drop table"])
def test_any_other_role_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInput, match="choose a role: owner or member"):
        team.parse_role(value)


def test_an_invitation_is_a_hashed_link_and_an_email(ctx: Context, panel: Panel) -> None:
    panel.sign_up(name="Shop")
    account_id = user(ctx).account_id
    row = invite_in_db(ctx, account_id, " New@Example.COM ", "owner")
    assert (row.email, row.role, row.purpose) == ("New@example.com", "owner", LinkPurpose.INVITE)
    assert row.expires_at == ctx.clock.now() + links.LIFETIMES[LinkPurpose.INVITE]
    (message,) = emails(ctx, "team_invitation")
    assert message.to_address == "New@example.com"
    context = figures(message)
    assert context["role"] == "owner" and context["account_name"] == "Shop"
    assert context["invited_by"] == "owner@example.com"
    assert links.token_hash(context["token"]) == row.token_hash


def test_inviting_the_same_address_again_replaces_the_invitation(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    account_id = user(ctx).account_id
    invite_in_db(ctx, account_id, "new@example.com")
    invite_in_db(ctx, account_id, "new@example.com", "owner")
    with ctx.db.read() as session:
        (pending,) = team.invitations(session, account_id=account_id, now=ctx.clock.now())
    assert pending.role == "owner"
    first, _ = (figures(m)["token"] for m in emails(ctx, "team_invitation"))
    with ctx.db.read() as session, pytest.raises(links.SpentLink):
        team.invitation(session, token=first, now=ctx.clock.now())


def test_a_team_has_a_size_limit(
    ctx: Context, panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel.sign_up()
    monkeypatch.setattr(team, "MAX_TEAM", 2)
    account_id = user(ctx).account_id
    invite_in_db(ctx, account_id, "one@example.com")
    with pytest.raises(Conflict, match="at most 2 people"):
        invite_in_db(ctx, account_id, "two@example.com")


def test_the_last_owner_stays(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    owner = user(ctx)
    with ctx.db.uow() as uow:
        with pytest.raises(Conflict, match="at least one owner"):
            team.change_role(
                uow.session,
                account_id=owner.account_id,
                user_id=owner.id,
                role="member",
                now=ctx.clock.now(),
            )
        with pytest.raises(Conflict, match="at least one owner"):
            team.remove(
                uow.session, account_id=owner.account_id, user_id=owner.id, now=ctx.clock.now()
            )
    add_member(ctx, "second@example.com", role="owner")
    with ctx.db.uow() as uow:
        team.change_role(
            uow.session,
            account_id=owner.account_id,
            user_id=owner.id,
            role="member",
            now=ctx.clock.now(),
        )
        uow.commit()
    assert people(ctx) == {"owner@example.com": "member", "second@example.com": "owner"}


def test_members_are_listed_owners_first(ctx: Context, panel: Panel) -> None:
    panel.sign_up("zed@example.com")
    add_member(ctx, "amy@example.com", owner="zed@example.com")
    add_member(ctx, "bea@example.com", role="owner", owner="zed@example.com")
    with ctx.db.read() as session:
        listed = team.members(session, account_id=user(ctx, "zed@example.com").account_id)
    assert [u.email for u in listed] == ["bea@example.com", "zed@example.com", "amy@example.com"]


def test_an_invitation_of_another_account_cannot_be_withdrawn(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    new_panel(ctx).sign_up("other@example.com")
    mine = invite_in_db(ctx, user(ctx).account_id, "new@example.com")
    with ctx.db.uow() as uow, pytest.raises(NotFound):
        team.revoke_invitation(
            uow.session,
            account_id=user(ctx, "other@example.com").account_id,
            invitation_id=mine.id,
            now=ctx.clock.now(),
        )


# --- inviting and accepting, in the panel ------------------------------------------------


def test_an_invitation_all_the_way_over_smtp(
    ctx: Context, panel: Panel, smtp_server: SmtpServer
) -> None:
    panel.sign_up(name="Shop")
    assert deliver_over_smtp(ctx, smtp_server).sent == 1  # the sign-up's verification
    smtp_server.inbox.messages.clear()
    sent = invite(panel, "new@example.com", "member")
    assert sent.status_code == 303
    page = panel.client.get(sent.headers["location"])
    assert "Invitation sent. The link in it works for 7 days." in page.text
    assert 'data-testid="invitation"' in page.text and "new@example.com" in page.text

    assert deliver_over_smtp(ctx, smtp_server).sent == 1
    (received,) = smtp_server.inbox.messages
    assert received["To"] == "new@example.com"
    assert received["Subject"] == "owner@example.com invited you to Shop on Chatmeter"
    path = link_in(received, ctx.settings, ACCEPT)

    invitee = new_panel(ctx)
    offer = invitee.client.get(path)
    assert offer.status_code == 200
    assert "Join Shop" in offer.text and "<strong>a member</strong>" in offer.text
    assert offer.headers["Referrer-Policy"] == "no-referrer"
    joined = accept(invitee, path)
    assert joined.status_code == 303 and joined.headers["location"] == "/panel/dashboard"
    assert signed_in(invitee)
    assert people(ctx) == {"owner@example.com": "owner", "new@example.com": "member"}
    assert user(ctx, "new@example.com").account_id == user(ctx).account_id
    assert new_panel(ctx).sign_in("new@example.com").status_code == 303

    again = new_panel(ctx).client.get(path)
    assert again.status_code == 410
    assert "This invitation was already used or withdrawn; ask for a new one." in again.text
    assert 'data-testid="invitation"' not in panel.client.get("/panel/settings").text


def test_a_member_sees_the_team_but_cannot_manage_it_or_billing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    add_member(ctx)
    invite(panel, "pending@example.com")
    member = new_panel(ctx)
    member.sign_in("member@example.com")
    page = member.client.get("/panel/settings")
    assert page.status_code == 200
    assert page.text.count('data-testid="member"') == 2
    assert "pending@example.com" in page.text
    assert "Only owners can invite people or change the team." in page.text
    assert "/panel/settings/team/" not in page.text  # no invite, role, remove or withdraw form
    assert "Send invitation" not in page.text and "Remove" not in page.text

    owner_id = user(ctx).id
    (pending,) = emails(ctx, "team_invitation")[1:]
    with ctx.db.read() as session:
        invitation_id = session.scalar(
            select(EmailLink.id).where(EmailLink.email == "pending@example.com")
        )
    for response in [
        invite(member, "friend@example.com"),
        team_action(member, owner_id, "role", role="member"),
        team_action(member, owner_id, "remove"),
        member.post(
            f"/panel/settings/team/invitations/{invitation_id}/revoke", {}, page="/panel/settings"
        ),
    ]:
        assert response.status_code == 403
        assert MANAGE_REFUSED in response.text
    billing = member.post("/panel/billing/packages", {"packages": "3"}, page="/panel/billing")
    assert billing.status_code == 403
    assert people(ctx) == {"owner@example.com": "owner", "member@example.com": "member"}
    assert len(emails(ctx, "team_invitation")) == 2
    with ctx.db.read() as session:
        still = session.get(EmailLink, invitation_id)
        assert still is not None and still.used_at is None
    assert pending.to_address == "pending@example.com"


def test_the_owner_changes_roles_and_removes_people(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    add_member(ctx)
    member = new_panel(ctx)
    member.sign_in("member@example.com")
    member_id = user(ctx, "member@example.com").id

    promoted = team_action(panel, member_id, "role", role="owner")
    assert promoted.status_code == 303
    assert "The role is changed." in panel.client.get(promoted.headers["location"]).text
    assert people(ctx)["member@example.com"] == "owner"
    assert signed_in(member)  # a new role applies to the running session
    assert team_action(panel, member_id, "role", role="member").status_code == 303

    # A reset link of theirs must not stop the removal (nor outlive it).
    member.post("/panel/password/forgot", {"email": "member@example.com"})
    reset_link = link_path(emails(ctx, "password_reset")[0], "/panel/password/reset")
    removed = team_action(panel, member_id, "remove")
    assert removed.status_code == 303
    assert (
        "They are removed from the team and signed out."
        in panel.client.get(removed.headers["location"]).text
    )
    assert "member@example.com" not in people(ctx)
    assert not signed_in(member)
    assert panel.client.get(reset_link).status_code == 404
    assert new_panel(ctx).sign_in("member@example.com").status_code == 401


def test_the_last_owner_can_be_neither_demoted_nor_removed(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    add_member(ctx)
    owner_id = user(ctx).id
    page = panel.client.get("/panel/settings")
    assert "the only owner" in page.text
    assert f"/panel/settings/team/{owner_id}/" not in page.text  # no buttons to try
    for response in [
        team_action(panel, owner_id, "role", role="member"),
        team_action(panel, owner_id, "remove"),
    ]:
        assert response.status_code == 409
        assert (
            "The account must keep at least one owner; make someone else an owner first."
            in response.text
        )
    assert people(ctx)["owner@example.com"] == "owner"
    assert signed_in(panel)


def test_an_owner_may_leave_when_another_owner_stays(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    add_member(ctx, "second@example.com", role="owner")
    left = team_action(panel, user(ctx).id, "remove")
    assert left.status_code == 200
    assert "You left the team and are signed out." in left.text
    assert not signed_in(panel)
    assert people(ctx) == {"second@example.com": "owner"}


def test_a_withdrawn_invitation_no_longer_works(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    invite(panel, "new@example.com")
    (message,) = emails(ctx, "team_invitation")
    path = link_path(message, ACCEPT)
    with ctx.db.read() as session:
        (row,) = session.scalars(select(EmailLink).where(EmailLink.purpose == "invite"))
    withdrawn = panel.post(
        f"/panel/settings/team/invitations/{row.id}/revoke", {}, page="/panel/settings"
    )
    assert withdrawn.status_code == 303
    assert "The invitation is withdrawn" in panel.client.get(withdrawn.headers["location"]).text
    refused = new_panel(ctx).client.get(path)
    assert refused.status_code == 410
    assert accept(new_panel(ctx), path).status_code == 410
    assert "new@example.com" not in people(ctx)
    again = panel.post(
        f"/panel/settings/team/invitations/{row.id}/revoke", {}, page="/panel/settings"
    )
    assert again.status_code == 404
    assert "This invitation is no longer pending." in again.text


def test_an_invitation_expires_after_7_days(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    invite(panel, "new@example.com")
    path = link_path(emails(ctx, "team_invitation")[0], ACCEPT)
    ctx.clock.advance(days=6, hours=23)
    assert new_panel(ctx).client.get(path).status_code == 200
    ctx.clock.advance(hours=1)
    expired = new_panel(ctx).client.get(path)
    assert expired.status_code == 410
    assert "This invitation has expired (it works for 7 days)" in expired.text
    assert accept(new_panel(ctx), path).status_code == 410
    assert "Pending invitations" not in panel.client.get("/panel/settings").text


@pytest.mark.parametrize(
    ("email", "role", "message"),
    [
        ("", "member", "Enter a valid email address."),
        ("not-an-email", "member", "Enter a valid email address"),
        ("a" * 400 + "@example.com", "member", "The email is too long (at most 320 characters)."),
        ("new@example.com", "admin", "Choose a role: owner or member."),
        ("new@example.com", "", "Choose a role: owner or member."),
        ("new@example.com", "o" * 17, "The role is too long (at most 16 characters)."),
        ("owner@example.com", "member", "This person is already on your team (owner@example.com)."),
    ],
)
def test_bad_invitations_send_nothing(
    ctx: Context, panel: Panel, email: str, role: str, message: str
) -> None:
    panel.sign_up()
    response = invite(panel, email, role)
    assert response.status_code in (409, 422)
    assert message in response.text
    assert 'class="alert alert-error team-alert"' in response.text
    assert emails(ctx, "team_invitation") == []


def test_a_person_belongs_to_one_account(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    new_panel(ctx).sign_up("bob@example.com")
    refused = invite(panel, "bob@example.com")
    assert refused.status_code == 409
    assert "already signs in to another Chatmeter account" in refused.text
    assert emails(ctx, "team_invitation") == []


def test_accepting_is_refused_when_the_email_signed_up_meanwhile(
    ctx: Context, panel: Panel
) -> None:
    panel.sign_up()
    invite(panel, "new@example.com")
    path = link_path(emails(ctx, "team_invitation")[0], ACCEPT)
    assert new_panel(ctx).sign_up("new@example.com").status_code == 303  # their own account
    invitee = new_panel(ctx)
    page = invitee.client.get(path)
    assert page.status_code == 409
    assert (
        "This email (new@example.com) already signs in to another Chatmeter account, and a "
        "person can belong to one account only; use another email address." in page.text
    )
    assert accept(invitee, path).status_code == 409
    assert user(ctx, "new@example.com").account_id != user(ctx).account_id


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "Enter a password."),
        ("short", "The password must be at least 10 characters."),
        ("p" * 300, "The password is too long (at most 256 characters)."),
    ],
)
def test_a_bad_password_on_the_invitation_page_creates_nobody(
    ctx: Context, panel: Panel, password: str, message: str
) -> None:
    panel.sign_up()
    invite(panel, "new@example.com")
    path = link_path(emails(ctx, "team_invitation")[0], ACCEPT)
    invitee = new_panel(ctx)
    refused = accept(invitee, path, password)
    assert refused.status_code == 422
    assert message in refused.text
    assert "Join the team" in refused.text  # the form again
    assert "new@example.com" not in people(ctx)
    assert accept(invitee, path).status_code == 303  # the link still works


@pytest.mark.parametrize("target", ["999999", "abc", "1" * 30, "other"])
def test_people_outside_the_team_are_not_found(ctx: Context, panel: Panel, target: str) -> None:
    panel.sign_up()
    new_panel(ctx).sign_up("other@example.com")
    user_id = user(ctx, "other@example.com").id if target == "other" else target
    for what, fields in (("role", {"role": "owner"}), ("remove", {})):
        response = team_action(panel, user_id, what, **fields)
        assert response.status_code == 404
        assert 'class="alert alert-error team-alert"' in response.text
    assert people(ctx) == {"owner@example.com": "owner", "other@example.com": "owner"}


def test_a_bad_role_change_changes_nothing(ctx: Context, panel: Panel) -> None:
    panel.sign_up()
    add_member(ctx)
    member_id = user(ctx, "member@example.com").id
    response = team_action(panel, member_id, "role", role="superuser")
    assert response.status_code == 422
    assert "Choose a role: owner or member." in response.text
    assert people(ctx)["member@example.com"] == "member"


@pytest.mark.parametrize("query", ["", "?token=", "?token=" + "C" * 43])
def test_a_forged_invitation_link_gets_a_readable_page(
    ctx: Context, panel: Panel, query: str
) -> None:
    page = panel.client.get(ACCEPT + query)
    assert page.status_code == 404
    assert "This link is not valid" in page.text
    assert "This invitation can't be used" in page.text
