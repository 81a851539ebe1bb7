"""alerts: CAP 1.2 alert sources (integration tokens) and the alerts they sent"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0017"
down_revision = "0016"

OUTCOMES = ("refused", "not_aired", "held", "aired", "rejected", "cancelled", "no_stations")


def upgrade() -> None:
    op.create_table(
        "alert_sources",
        m.key(),
        m.column("name", sa.String(length=100)),
        m.column("auto_air", sa.Boolean()),
        m.column("enabled", sa.Boolean()),
        m.when("created_at", nullable=False),
        m.column("created_by", sa.String(length=64)),
        m.column("token_hash", sa.String(length=64)),
        m.primary_key("alert_sources"),
        m.unique("alert_sources", "name"),
        m.unique("alert_sources", "token_hash"),
    )
    op.create_table(
        "alerts",
        m.key(),
        m.column("source_id", sa.Integer(), nullable=True),
        m.when("received_at", nullable=False),
        m.column("identifier", sa.String(length=300), nullable=True),
        m.column("sender", sa.String(length=300), nullable=True),
        m.when("sent"),
        m.column("status", sa.String(length=16), nullable=True),
        m.column("msg_type", sa.String(length=16), nullable=True),
        m.column("outcome", m.enum("alert_outcome", *OUTCOMES)),
        m.column("reason", sa.Text(), nullable=True),
        m.column("reason_vi", sa.Text(), nullable=True),
        m.column("headline", sa.String(length=300), nullable=True),
        m.column("text", sa.Text(), nullable=True),
        m.column("tier", sa.String(length=16), nullable=True),
        m.column("repeat", sa.Integer()),
        m.column("risk_level", sa.Integer(), nullable=True),
        m.when("expires"),
        m.column("stations", m.JSONB),
        m.column("areas", m.JSONB),
        m.column("no_stations", sa.Boolean()),
        m.column("approval", m.enum("approval", "draft", "approved", "rejected"), nullable=True),
        m.column("approved_by", sa.String(length=64), nullable=True),
        m.when("approved_at"),
        m.column("broadcast_id", sa.Integer(), nullable=True),
        m.column("document", sa.Text(), nullable=True),
        m.foreign_key("alerts", "broadcast_id", "broadcasts", "SET NULL"),
        m.foreign_key("alerts", "source_id", "alert_sources", "SET NULL"),
        m.primary_key("alerts"),
    )
    m.create_indexes(
        "alerts",
        "broadcast_id",
        "received_at",
        "source_id",
        ix_alerts_sender_identifier=["sender", "identifier"],
    )


def downgrade() -> None:
    m.drop_tables("alerts", "alert_sources")
