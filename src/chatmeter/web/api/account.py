"""The account's own settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chatmeter.accounts import service as accounts
from chatmeter.accounts.models import Account
from chatmeter.web.deps import AccountDep, ContextDep
from chatmeter.web.schemas import AccountIn, AccountOut

router = APIRouter(tags=["account"])


@router.get("/account", response_model=AccountOut)
def get_account(ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    with ctx.db.read() as session:
        return account_dict(accounts.get_account(session, account_id=account_id))


@router.patch("/account", response_model=AccountOut)
def update_account(body: AccountIn, ctx: ContextDep, account_id: AccountDep) -> dict[str, Any]:
    """Change the contact email (both addresses are told), time zone, name or surge alert
    settings."""
    with ctx.db.uow() as uow:
        account = accounts.update_account(
            uow.session,
            account_id=account_id,
            now=ctx.clock.now(),
            contact_email=body.contact_email,
            timezone=body.timezone,
            name=body.name,
            surge_multiple=body.surge_multiple,
            surge_min_tokens=body.surge_min_tokens,
        )
        uow.commit()
    return account_dict(account)


def account_dict(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "contact_email": account.contact_email,
        "timezone": account.timezone,
        "created_at": account.created_at,
        "surge_multiple": account.surge_multiple_tenths / 10,
        "surge_min_tokens": account.surge_min_tokens,
    }
