"""The team: the users of one account, their roles, and invitations by email.

Only owners manage the team (the pages check ``owner_only``); members see it.
An account always keeps at least one owner: the last one can be neither
demoted nor removed. Every change takes the account's lock (the balance row,
``ledger.lock_balance``), so two owners demoting each other at the same moment
cannot leave the account without one.

A person signs in with one email and belongs to one account: an invitation to
an address that already has a sign-in is refused, when it is sent and again
when it is accepted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatmeter.accounts import links
from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import EmailLink, LinkPurpose, Role, User
from chatmeter.accounts.users import hash_password
from chatmeter.errors import Conflict, InvalidInput, NotFound
from chatmeter.ledger import service as ledger
from chatmeter.notifications.outbox import enqueue

# Members plus pending invitations: a team, not a mailing list.
MAX_TEAM = 50
ROLE_MESSAGE = "choose a role: owner or member"
LAST_OWNER = "the account must keep at least one owner; make someone else an owner first"


@dataclass(frozen=True)
class Invitation:
    """An invitation as its accept page shows it."""

    email: str
    role: str
    account_name: str
    expires_at: dt.datetime


def parse_role(value: object) -> Role:
    if not isinstance(value, str) or value.strip().lower() not in {r.value for r in Role}:
        raise InvalidInput(ROLE_MESSAGE, field="role")
    return Role(value.strip().lower())


def members(session: Session, *, account_id: int) -> list[User]:
    """The account's users: owners first, then by email."""
    return list(
        session.scalars(
            select(User)
            .where(User.account_id == account_id)
            .order_by((User.role == Role.OWNER).desc(), User.email)
        )
    )


def invitations(session: Session, *, account_id: int, now: dt.datetime) -> list[EmailLink]:
    """Invitations not yet accepted, withdrawn or expired, newest first."""
    return links.pending(session, purpose=LinkPurpose.INVITE, account_id=account_id, now=now)


def invite(
    session: Session,
    *,
    account_id: int,
    invited_by: str,
    email: object,
    role: object,
    now: dt.datetime,
) -> EmailLink:
    """Email an invitation to join the account; a new one to the same address replaces it."""
    address = accounts.normalise_email(email)
    chosen = parse_role(role)
    ledger.lock_balance(session, account_id=account_id)
    account = accounts.get_account(session, account_id=account_id)
    accounts.require_verified(account, to="invite people")
    _check_free(session, account_id=account_id, email=address)
    links.withdraw(
        session, purpose=LinkPurpose.INVITE, account_id=account_id, email=address, now=now
    )
    if _team_size(session, account_id=account_id, now=now) >= MAX_TEAM:
        raise Conflict(f"a team has at most {MAX_TEAM} people, invitations included")
    row, token = links.issue(
        session,
        purpose=LinkPurpose.INVITE,
        account_id=account_id,
        email=address,
        role=chosen,
        now=now,
    )
    enqueue(
        session,
        kind="team_invitation",
        dedupe_key=f"team_invitation:{row.id}",
        to=address,
        context={
            "account_name": account.name,
            "invited_by": invited_by,
            "email": address,
            "role": chosen.value,
            "token": token,
            "expires_at": row.expires_at.isoformat(),
        },
        now=now,
        account_id=account_id,
    )
    return row


def invitation(session: Session, *, token: object, now: dt.datetime) -> Invitation:
    """What an invitation link offers, or ``UnknownLink`` / ``SpentLink`` / ``Conflict``."""
    row = links.find(session, purpose=LinkPurpose.INVITE, token=token, now=now)
    account = accounts.get_account(session, account_id=row.account_id)
    _check_free(session, account_id=row.account_id, email=row.email)
    return Invitation(row.email, row.role or Role.MEMBER, account.name, row.expires_at)


def accept(session: Session, *, token: object, password: object, now: dt.datetime) -> User:
    """Create the invited user with the chosen password; the link stops working."""
    row = links.find(session, purpose=LinkPurpose.INVITE, token=token, now=now)
    ledger.lock_balance(session, account_id=row.account_id)
    _check_free(session, account_id=row.account_id, email=row.email)
    password_hash = hash_password(password)  # a refused password leaves the link usable
    links.use(session, row=row, now=now)
    user = User(
        account_id=row.account_id,
        email=row.email,
        password_hash=password_hash,
        role=row.role or Role.MEMBER,
        created_at=now,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # the same email signed up a moment ago
        raise Conflict(_taken_elsewhere(row.email), field="email") from exc
    return user


def change_role(
    session: Session, *, account_id: int, user_id: int, role: object, now: dt.datetime
) -> User:
    """Make a member an owner or an owner a member; the last owner stays an owner."""
    chosen = parse_role(role)
    ledger.lock_balance(session, account_id=account_id)
    user = _member(session, account_id=account_id, user_id=user_id)
    if user.role == Role.OWNER and chosen != Role.OWNER:
        _keep_an_owner(session, account_id=account_id)
    user.role = chosen
    return user


def remove(session: Session, *, account_id: int, user_id: int, now: dt.datetime) -> User:
    """Take a person off the team: their sign-in is deleted, so their sessions end at once."""
    ledger.lock_balance(session, account_id=account_id)
    user = _member(session, account_id=account_id, user_id=user_id)
    if user.role == Role.OWNER:
        _keep_an_owner(session, account_id=account_id)
    session.execute(delete(EmailLink).where(EmailLink.user_id == user.id))
    session.delete(user)
    session.flush()
    return user


def revoke_invitation(
    session: Session, *, account_id: int, invitation_id: int, now: dt.datetime
) -> EmailLink:
    """Withdraw a pending invitation: its link stops working."""
    ledger.lock_balance(session, account_id=account_id)
    row = session.get(EmailLink, invitation_id)
    if (
        row is None
        or row.account_id != account_id
        or row.purpose != LinkPurpose.INVITE
        or row.used_at is not None
        or row.expires_at <= now
    ):
        raise NotFound("this invitation is no longer pending")
    links.use(session, row=row, now=now)
    return row


# --- internals -------------------------------------------------------------------


def _member(session: Session, *, account_id: int, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.account_id != account_id:
        raise NotFound("this person is not on your team")
    return user


def _keep_an_owner(session: Session, *, account_id: int) -> None:
    owners = session.scalar(
        select(func.count(User.id)).where(User.account_id == account_id, User.role == Role.OWNER)
    )
    if (owners or 0) <= 1:
        raise Conflict(LAST_OWNER)


def _check_free(session: Session, *, account_id: int, email: str) -> None:
    """``Conflict`` when ``email`` already signs in, to this account or another."""
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        return
    if user.account_id == account_id:
        raise Conflict(f"this person is already on your team ({email})", field="email")
    raise Conflict(_taken_elsewhere(email), field="email")


def _taken_elsewhere(email: str) -> str:
    return (
        f"this email ({email}) already signs in to another Chatmeter account, and a person "
        "can belong to one account only; use another email address"
    )


def _team_size(session: Session, *, account_id: int, now: dt.datetime) -> int:
    people = session.scalar(select(func.count(User.id)).where(User.account_id == account_id))
    return int(people or 0) + len(invitations(session, account_id=account_id, now=now))
