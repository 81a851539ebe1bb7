"""alerts: CAP 1.2 alert sources (integration tokens) and received alerts"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.create_table(
        "alert_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("auto_air", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_alert_sources_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_alert_sources_token_hash")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identifier", sa.String(length=300), nullable=True),
        sa.Column("sender", sa.String(length=300), nullable=True),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("msg_type", sa.String(length=16), nullable=True),
        sa.Column(
            "outcome",
            sa.Enum(
                "refused", "not_aired", "held", "aired", "rejected", "cancelled", "no_stations",
                name="alert_outcome", native_enum=False, length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reason_vi", sa.Text(), nullable=True),
        sa.Column("headline", sa.String(length=300), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=True),
        sa.Column("repeat", sa.Integer(), nullable=False),
        sa.Column("risk_level", sa.Integer(), nullable=True),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stations", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("areas", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("no_stations", sa.Boolean(), nullable=False),
        sa.Column(
            "approval",
            sa.Enum("draft", "approved", "rejected", name="approval", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("broadcast_id", sa.Integer(), nullable=True),
        sa.Column("document", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"], ["alert_sources.id"], name=op.f("fk_alerts_source_id_alert_sources"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["broadcast_id"], ["broadcasts.id"], name=op.f("fk_alerts_broadcast_id_broadcasts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_sender_identifier", "alerts", ["sender", "identifier"])
    op.create_index(op.f("ix_alerts_source_id"), "alerts", ["source_id"])
    op.create_index(op.f("ix_alerts_received_at"), "alerts", ["received_at"])
    op.create_index(op.f("ix_alerts_broadcast_id"), "alerts", ["broadcast_id"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("alert_sources")
