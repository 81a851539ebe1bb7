"""dispatch: outbox, broadcasts, events, play log"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0006"
down_revision = "0005"

PLAY_STATUSES = (
    "planned",
    "playing",
    "played",
    "partial",
    "preempted",
    "skipped",
    "failed",
    "missed",
    "cancelled",
)
TARGET_STATUSES = (
    "PENDING",
    "SENT",
    "RECEIVED",
    "IN_PROGRESS",
    "SUCCEEDED",
    "FAILED",
    "REJECTED",
    "EXPIRED",
)


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        m.key(),
        m.column("title", sa.String(length=300)),
        m.column("tier", sa.String(length=16)),
        m.column("priority", sa.Integer()),
        m.column("content", m.JSONB),
        m.column("asset_id", sa.Integer(), nullable=True),
        m.column("targets", m.JSONB),
        m.column("station_count", sa.Integer()),
        m.when("start_at", nullable=False),
        m.when("until"),
        m.column("repeat", sa.Integer()),
        m.when("not_after", nullable=False),
        m.column("status", m.enum("broadcast_status", "active", "stopped", "finished")),
        m.column("approval_note", sa.Text(), nullable=True),
        *m.authorship(),
        m.when("created_at", nullable=False),
        m.when("stopped_at"),
        m.column("stopped_by", sa.String(length=64), nullable=True),
        m.foreign_key("broadcasts", "asset_id", "media_assets", "SET NULL"),
        m.primary_key("broadcasts"),
    )
    m.create_indexes("broadcasts", "created_at")

    op.create_table(
        "plays",
        m.key(big=True),
        m.column("station_id", sa.Integer()),
        m.column("source", sa.String(length=16)),
        m.column("item_id", sa.String(length=128), nullable=True),
        m.column("cmd_id", sa.String(length=64), nullable=True),
        m.column("rule_id", sa.Integer(), nullable=True),
        m.column("broadcast_id", sa.Integer(), nullable=True),
        m.column("title", sa.String(length=500)),
        m.column("kind", sa.String(length=8)),
        m.column("priority", sa.Integer()),
        m.when("planned_start", nullable=False),
        m.when("planned_end", nullable=False),
        m.column("expected_ms", sa.BigInteger()),
        m.column("status", m.enum("play_status", *PLAY_STATUSES)),
        m.when("started_at"),
        m.when("ended_at"),
        m.column("played_ms", sa.BigInteger(), nullable=True),
        m.column("reason", sa.String(length=500), nullable=True),
        m.when("updated_at", nullable=False),
        m.foreign_key("plays", "station_id", "stations", "CASCADE"),
        m.primary_key("plays"),
        m.unique("plays", "station_id", "cmd_id", name="uq_plays_station_cmd"),
        m.unique("plays", "station_id", "item_id", name="uq_plays_station_item"),
    )
    m.create_indexes(
        "plays",
        "broadcast_id",
        "planned_start",
        ix_plays_status_end=["status", "planned_end"],
    )

    op.create_table(
        "station_events",
        m.key(big=True),
        m.column("station_id", sa.Integer()),
        m.column("event_id", sa.String(length=128)),
        m.column("type", sa.String(length=32)),
        m.when("at", nullable=False),
        m.when("received_at", nullable=False),
        m.column("item_id", sa.String(length=128), nullable=True),
        m.column("cmd_id", sa.String(length=128), nullable=True),
        m.column("desired_version", sa.Integer(), nullable=True),
        m.column("position_ms", sa.BigInteger(), nullable=True),
        m.column("reason", sa.String(length=500), nullable=True),
        m.column("fault", sa.String(length=32), nullable=True),
        m.column("sha256", sa.String(length=64), nullable=True),
        m.foreign_key("station_events", "station_id", "stations", "CASCADE"),
        m.primary_key("station_events"),
        m.unique("station_events", "station_id", "event_id"),
    )
    m.create_indexes("station_events", ix_station_events_station_at=["station_id", "at"])

    op.create_table(
        "commands",
        m.key(),
        m.column("cmd_id", sa.String(length=64)),
        m.column("type", sa.String(length=16)),
        m.column("body", m.JSONB),
        m.column("priority", sa.Integer(), nullable=True),
        m.when("issued_at", nullable=False),
        m.when("not_after", nullable=False),
        m.when("deadline", nullable=False),
        m.column("route", m.enum("command_route", "stations", "groups")),
        m.column("groups", m.JSONB),
        m.column("broadcast_id", sa.Integer(), nullable=True),
        m.column("created_by", sa.String(length=64)),
        m.when("created_at", nullable=False),
        m.when("published_at"),
        m.column("publish_count", sa.Integer()),
        m.column("done", sa.Boolean()),
        m.foreign_key("commands", "broadcast_id", "broadcasts", "CASCADE"),
        m.primary_key("commands"),
        m.unique("commands", "cmd_id"),
    )
    m.create_indexes("commands", "broadcast_id", ix_commands_open=["done", "not_after"])

    op.create_table(
        "command_targets",
        m.key(big=True),
        m.column("command_id", sa.Integer()),
        m.column("station_id", sa.Integer()),
        m.column("status", m.enum("target_status", *TARGET_STATUSES)),
        m.column("direct", sa.Boolean()),
        m.column("reason", sa.String(length=500), nullable=True),
        m.when("station_time"),
        m.column("clock_offset_ms", sa.Float(), nullable=True),
        m.when("received_at"),
        m.when("updated_at", nullable=False),
        m.foreign_key("command_targets", "command_id", "commands", "CASCADE"),
        m.foreign_key("command_targets", "station_id", "stations", "CASCADE"),
        m.primary_key("command_targets"),
        m.unique("command_targets", "command_id", "station_id"),
    )
    m.create_indexes(
        "command_targets", "status", ix_command_targets_station=["station_id", "command_id"]
    )

    with op.batch_alter_table("station_states", schema=None) as batch_op:
        batch_op.add_column(m.column("desired_published_version", sa.Integer(), server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("station_states", schema=None) as batch_op:
        batch_op.drop_column("desired_published_version")
    m.drop_tables("command_targets", "commands", "station_events", "plays", "broadcasts")
