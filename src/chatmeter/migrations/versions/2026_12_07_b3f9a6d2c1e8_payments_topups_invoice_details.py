"""payments: saved cards, billing details, auto top-up, webhook events, tax and refunds

- billing_profiles: the customer's details on its invoices (name, address, tax id) and
  the card its gateway keeps for it (a reference, the brand, the last 4 digits, expiry).
- auto_topups: the account's auto top-up (threshold, packages, monthly cap) and whether
  it is armed for the next crossing.
- gateway_events: webhook events already applied, by gateway and event id.
- invoices: ``tax_rate`` and ``tax_cents`` (fixed when the invoice is made),
  ``checkout_reference`` (the gateway's hosted payment page), ``refunded_cents`` and
  ``refunded_at``.

Revision ID: b3f9a6d2c1e8
Revises: e4b7d1c8a2f6
Create Date: 2026-12-07 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import chatmeter.db

revision: str = "b3f9a6d2c1e8"
down_revision: str | None = "e4b7d1c8a2f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_profiles",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("billing_name", sa.String(length=200), nullable=False),
        sa.Column("billing_address", sa.Text(), nullable=False),
        sa.Column("tax_id", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("customer_reference", sa.String(length=200), nullable=True),
        sa.Column("card_reference", sa.String(length=200), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=False),
        sa.Column("card_exp_month", sa.Integer(), nullable=True),
        sa.Column("card_exp_year", sa.Integer(), nullable=True),
        sa.Column("updated_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "auto_topups",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("packages", sa.Integer(), nullable=False),
        sa.Column("monthly_cap", sa.Integer(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("updated_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("threshold >= 0", name="topup_threshold_not_negative"),
        sa.CheckConstraint("packages >= 1", name="topup_packages_positive"),
        sa.CheckConstraint("monthly_cap >= 1", name="topup_cap_positive"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "gateway_events",
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("received_at", chatmeter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "event_id"),
    )
    # Plain ADD COLUMN: SQLite adds a column in place, a batch would rebuild the table.
    op.add_column(
        "invoices", sa.Column("tax_rate", sa.String(8), nullable=False, server_default="0")
    )
    op.add_column(
        "invoices", sa.Column("tax_cents", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("invoices", sa.Column("checkout_reference", sa.String(200), nullable=True))
    op.add_column(
        "invoices",
        sa.Column("refunded_cents", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "invoices",
        sa.Column("refunded_at", chatmeter.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    for column in ("refunded_at", "refunded_cents", "checkout_reference", "tax_cents", "tax_rate"):
        op.drop_column("invoices", column)
    op.drop_table("gateway_events")
    op.drop_table("auto_topups")
    op.drop_table("billing_profiles")
