"""alarms: alarms and history, thresholds, subscriptions, deliveries; connection history"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    name = op.f(f"fk_{table}_{column}_{target}")
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=name, ondelete="CASCADE")


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}"))


def _index(table: str, column: str) -> None:
    op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


SEVERITIES = ("info", "warning", "critical")


def upgrade() -> None:
    op.create_table(
        "station_connections",
        sa.Column("id", BigId, nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("bdseq", BigId, nullable=False),
        sa.Column("online_at", When, nullable=False),
        sa.Column("offline_at", When, nullable=True),
        sa.Column("cause", _enum("connection_cause", "death", "server", "replaced"), nullable=True),
        _fk("station_connections", "station_id", "stations"),
        _pk("station_connections"),
    )
    op.create_index(
        "ix_station_connections_station_online",
        "station_connections",
        ["station_id", "online_at"],
        unique=False,
    )
    op.create_table(
        "alarm_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("channel", _enum("alarm_channel", "email", "webhook"), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=True),
        sa.Column("area_id", sa.Integer(), nullable=True),
        sa.Column("min_severity", _enum("alarm_min_severity", *SEVERITIES), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        _fk("alarm_subscriptions", "area_id", "areas"),
        _pk("alarm_subscriptions"),
    )
    _index("alarm_subscriptions", "area_id")
    op.create_table(
        "alarm_thresholds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "station_kind", _enum("threshold_station_kind", "hamlet", "smart"), nullable=True
        ),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.CheckConstraint(
            "(station_kind IS NULL) <> (station_id IS NULL)",
            name=op.f("ck_alarm_thresholds_kind_or_station"),
        ),
        _fk("alarm_thresholds", "station_id", "stations"),
        _pk("alarm_thresholds"),
        sa.UniqueConstraint("station_id", "key", name="uq_alarm_thresholds_station"),
        sa.UniqueConstraint("station_kind", "key", name="uq_alarm_thresholds_kind"),
    )
    op.create_table(
        "alarms",
        sa.Column("id", BigId, nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column(
            "condition",
            _enum(
                "alarm_condition",
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
            ),
            nullable=False,
        ),
        sa.Column("open_key", sa.String(length=32), nullable=True),
        sa.Column("severity", _enum("alarm_severity", *SEVERITIES), nullable=False),
        sa.Column(
            "status", _enum("alarm_status", "raised", "acknowledged", "cleared"), nullable=False
        ),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("raised_at", When, nullable=False),
        sa.Column("last_seen_at", When, nullable=False),
        sa.Column("clearing_since", When, nullable=True),
        sa.Column("raise_count", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", When, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("ack_note", sa.String(length=500), nullable=True),
        sa.Column("cleared_at", When, nullable=True),
        _fk("alarms", "station_id", "stations"),
        _pk("alarms"),
        sa.UniqueConstraint("station_id", "open_key", name="uq_alarms_open"),
    )
    _index("alarms", "station_id")
    op.create_index("ix_alarms_status_raised", "alarms", ["status", "raised_at"], unique=False)
    op.create_table(
        "alarm_deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("alarm_id", BigId, nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("snapshot", Json, nullable=False),
        sa.Column(
            "status",
            _enum("delivery_status", "pending", "sent", "failed", "dropped"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("sent_at", When, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _fk("alarm_deliveries", "alarm_id", "alarms"),
        _fk("alarm_deliveries", "subscription_id", "alarm_subscriptions"),
        _pk("alarm_deliveries"),
    )
    _index("alarm_deliveries", "alarm_id")
    op.create_index(
        "ix_alarm_deliveries_due", "alarm_deliveries", ["status", "next_attempt_at"], unique=False
    )
    _index("alarm_deliveries", "subscription_id")


def downgrade() -> None:
    op.drop_table("alarm_deliveries")
    op.drop_table("alarms")
    op.drop_table("alarm_thresholds")
    op.drop_table("alarm_subscriptions")
    op.drop_table("station_connections")
