"""alarms: alarms and history, thresholds, subscriptions, deliveries; connection history"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0016"
down_revision = "0015"

SEVERITIES = ("info", "warning", "critical")
CONDITIONS = (
    "station_offline",
    "link_flapping",
    "amp_temperature",
    "speaker_line",
    "mains_lost",
    "battery_low",
    "storage_low",
    "clock_offset",
    "plan_behind",
    "media_missing",
    "plays_missed",
    "commands_unacked",
)


def upgrade() -> None:
    op.create_table(
        "station_connections",
        m.key(big=True),
        m.column("station_id", sa.Integer()),
        m.column("bdseq", m.BIG_ID),
        m.when("online_at", nullable=False),
        m.when("offline_at"),
        m.column("cause", m.enum("connection_cause", "death", "server", "replaced"), True),
        m.foreign_key("station_connections", "station_id", "stations", "CASCADE"),
        m.primary_key("station_connections"),
    )
    m.create_indexes(
        "station_connections", ix_station_connections_station_online=["station_id", "online_at"]
    )
    op.create_table(
        "alarm_subscriptions",
        m.key(),
        m.column("name", sa.String(length=200)),
        m.column("channel", m.enum("alarm_channel", "email", "webhook")),
        m.column("target", sa.String(length=500)),
        m.column("secret", sa.String(length=128), nullable=True),
        m.column("area_id", sa.Integer(), nullable=True),
        m.column("min_severity", m.enum("alarm_min_severity", *SEVERITIES)),
        m.column("enabled", sa.Boolean()),
        m.when("created_at", nullable=False),
        m.foreign_key("alarm_subscriptions", "area_id", "areas", "CASCADE"),
        m.primary_key("alarm_subscriptions"),
    )
    m.create_indexes("alarm_subscriptions", "area_id")
    op.create_table(
        "alarm_thresholds",
        m.key(),
        m.column("station_kind", m.enum("threshold_station_kind", "hamlet", "smart"), True),
        m.column("station_id", sa.Integer(), nullable=True),
        m.column("key", sa.String(length=32)),
        m.column("value", sa.Float()),
        m.when("updated_at", nullable=False),
        m.check(
            "alarm_thresholds", "kind_or_station", "(station_kind IS NULL) <> (station_id IS NULL)"
        ),
        m.foreign_key("alarm_thresholds", "station_id", "stations", "CASCADE"),
        m.primary_key("alarm_thresholds"),
        # one override per key for a station, and for a kind
        *(
            m.unique("alarm_thresholds", f"station_{of}", "key", name=f"uq_alarm_thresholds_{of}")
            for of in ("id", "kind")
        ),
    )
    op.create_table(
        "alarms",
        m.key(big=True),
        m.column("station_id", sa.Integer()),
        m.column("condition", m.enum("alarm_condition", *CONDITIONS)),
        m.column("open_key", sa.String(length=32), nullable=True),
        m.column("severity", m.enum("alarm_severity", *SEVERITIES)),
        m.column("status", m.enum("alarm_status", "raised", "acknowledged", "cleared")),
        m.column("detail", sa.String(length=300)),
        m.column("value", sa.Float(), nullable=True),
        m.when("raised_at", nullable=False),
        m.when("last_seen_at", nullable=False),
        m.when("clearing_since"),
        m.column("raise_count", sa.Integer()),
        m.when("acknowledged_at"),
        m.column("acknowledged_by", sa.String(length=64), nullable=True),
        m.column("ack_note", sa.String(length=500), nullable=True),
        m.when("cleared_at"),
        m.foreign_key("alarms", "station_id", "stations", "CASCADE"),
        m.primary_key("alarms"),
        m.unique("alarms", "station_id", "open_key", name="uq_alarms_open"),
    )
    m.create_indexes("alarms", "station_id", ix_alarms_status_raised=["status", "raised_at"])
    op.create_table(
        "alarm_deliveries",
        m.key(big=True),
        m.column("alarm_id", m.BIG_ID),
        m.column("subscription_id", sa.Integer()),
        m.column("event", sa.String(length=16)),
        m.column("snapshot", m.JSONB),
        m.column("status", m.enum("delivery_status", "pending", "sent", "failed", "dropped")),
        m.column("attempts", sa.Integer()),
        m.when("next_attempt_at", nullable=False),
        m.when("created_at", nullable=False),
        m.when("sent_at"),
        m.column("last_error", sa.Text(), nullable=True),
        m.foreign_key("alarm_deliveries", "alarm_id", "alarms", "CASCADE"),
        m.foreign_key("alarm_deliveries", "subscription_id", "alarm_subscriptions", "CASCADE"),
        m.primary_key("alarm_deliveries"),
    )
    m.create_indexes(
        "alarm_deliveries",
        "alarm_id",
        "subscription_id",
        ix_alarm_deliveries_due=["status", "next_attempt_at"],
    )


def downgrade() -> None:
    m.drop_tables(
        "alarm_deliveries",
        "alarms",
        "alarm_thresholds",
        "alarm_subscriptions",
        "station_connections",
    )
