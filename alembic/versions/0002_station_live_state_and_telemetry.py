"""station live state and telemetry"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "station_states",
        m.column("station_id", sa.Integer()),
        m.column("online", sa.Boolean()),
        m.column("bdseq", sa.Integer(), nullable=True),
        m.when("online_since"),
        m.when("offline_since"),
        m.when("last_seen"),
        m.column("firmware", sa.String(length=64), nullable=True),
        m.column("model", sa.String(length=64), nullable=True),
        m.column("capabilities", m.JSONB),
        m.column("held_version", sa.Integer(), nullable=True),
        m.column("desired_version", sa.Integer()),
        m.column("desired_digest", sa.String(length=64), nullable=True),
        m.when("desired_at"),
        m.column("applied_version", sa.Integer(), nullable=True),
        m.column("missing", m.JSONB),
        m.when("reported_at"),
        m.column("cache_bytes", sa.Integer(), nullable=True),
        m.column("volume", sa.Integer(), nullable=True),
        m.column("telemetry", m.JSONB, nullable=True),
        m.when("telemetry_at"),
        m.column("faults", m.JSONB),
        m.foreign_key("station_states", "station_id", "stations", "CASCADE"),
        m.primary_key("station_states", "station_id"),
    )
    m.create_indexes("station_states", "online")

    op.create_table(
        "telemetry",
        m.key(big=True),
        m.column("station_id", sa.Integer()),
        m.when("at", nullable=False),
        m.when("received_at", nullable=False),
        m.column("seq", sa.Integer()),
        m.column("data", m.JSONB),
        m.foreign_key("telemetry", "station_id", "stations", "CASCADE"),
        m.primary_key("telemetry"),
    )
    m.create_indexes("telemetry", "received_at", ix_telemetry_station_at=["station_id", "at"])


def downgrade() -> None:
    m.drop_tables("telemetry", "station_states")
