"""dead letters: quarantined station messages; 64-bit telemetry seq and cache size

Revision ID: 0015
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", BigId, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=True),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_received_at"), "dead_letters", ["received_at"], unique=False
    )
    op.create_index(
        "ix_dead_letters_sid_received", "dead_letters", ["sid", "received_at"], unique=False
    )
    # SQLite's INTEGER is 64-bit already; PostgreSQL's is not
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("telemetry", "seq", type_=sa.BigInteger())
        op.alter_column("station_states", "cache_bytes", type_=sa.BigInteger())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("station_states", "cache_bytes", type_=sa.Integer())
        op.alter_column("telemetry", "seq", type_=sa.Integer())
    op.drop_index("ix_dead_letters_sid_received", table_name="dead_letters")
    op.drop_index(op.f("ix_dead_letters_received_at"), table_name="dead_letters")
    op.drop_table("dead_letters")
