"""dead letters: quarantined station messages; 64-bit telemetry seq and cache size"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0015"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        m.key(big=True),
        m.when("received_at", nullable=False),
        m.column("sid", sa.String(length=64), nullable=True),
        m.column("topic", sa.String(length=300)),
        m.column("kind", sa.String(length=16), nullable=True),
        m.column("category", sa.String(length=16)),
        m.column("reason", sa.String(length=500)),
        m.column("size", sa.Integer()),
        m.column("payload", sa.Text()),
        m.primary_key("dead_letters"),
    )
    m.create_indexes(
        "dead_letters", "received_at", ix_dead_letters_sid_received=["sid", "received_at"]
    )
    # SQLite's INTEGER is 64-bit already; PostgreSQL's is not
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("telemetry", "seq", type_=sa.BigInteger())
        op.alter_column("station_states", "cache_bytes", type_=sa.BigInteger())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("station_states", "cache_bytes", type_=sa.Integer())
        op.alter_column("telemetry", "seq", type_=sa.Integer())
    op.drop_table("dead_letters")
