"""schedules: stream sources, programmes and items, schedule rules and their targets"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "programmes",
        m.key(),
        m.column("key", sa.String(length=100), nullable=True),
        *m.searchable("title", 300),
        m.column("owner_area_id", sa.Integer(), nullable=True),
        *m.authorship(),
        *m.timestamps(),
        m.foreign_key("programmes", "owner_area_id", "areas", "SET NULL"),
        m.primary_key("programmes"),
        m.unique("programmes", "key"),
    )
    m.create_indexes("programmes", "owner_area_id", "title_folded")

    op.create_table(
        "schedule_rules",
        m.key(),
        m.column("key", sa.String(length=100), nullable=True),
        *m.searchable("title", 300),
        m.column("programme_id", sa.Integer()),
        m.column("tier", m.enum("schedule_tier", "filler", "normal", "priority", "emergency")),
        m.column("priority", sa.Integer()),
        m.column("sort_order", sa.Integer()),
        m.column("owner_area_id", sa.Integer(), nullable=True),
        m.column("volume", sa.Integer(), nullable=True),
        m.column("recurrence", m.JSONB),
        m.column("ends_on", sa.Date(), nullable=True),
        m.column("shift_tolerance_s", sa.Integer()),
        m.column("slot_s", sa.Integer(), nullable=True),
        m.column("enabled", sa.Boolean()),
        m.column("approval", m.enum("schedule_approval", "draft", "approved", "rejected")),
        m.column("approved_by", sa.String(length=64), nullable=True),
        m.column("approved_by_id", sa.Integer(), nullable=True),
        m.when("approved_at"),
        m.column("approval_note", sa.Text(), nullable=True),
        m.column("target_names", m.JSONB),
        *m.authorship(),
        *m.timestamps(),
        m.check("schedule_rules", "priority_range", "priority BETWEEN 0 AND 9"),
        m.check("schedule_rules", "volume_range", "volume IS NULL OR (volume BETWEEN 0 AND 100)"),
        m.foreign_key("schedule_rules", "owner_area_id", "areas", "SET NULL"),
        m.foreign_key("schedule_rules", "programme_id", "programmes", "RESTRICT"),
        m.primary_key("schedule_rules"),
        m.unique("schedule_rules", "key"),
    )
    m.create_indexes(
        "schedule_rules", "approval", "enabled", "owner_area_id", "programme_id", "title_folded"
    )

    op.create_table(
        "stream_sources",
        m.key(),
        m.column("key", sa.String(length=100), nullable=True),
        *m.searchable("name", 200),
        m.column("url", sa.String(length=1000)),
        m.column("kind", m.enum("stream_kind", "national", "provincial", "city", "commune")),
        m.column("fallback_asset_id", sa.Integer(), nullable=True),
        m.column("owner_area_id", sa.Integer(), nullable=True),
        m.column("enabled", sa.Boolean()),
        *m.authorship(),
        *m.timestamps(),
        m.foreign_key("stream_sources", "fallback_asset_id", "media_assets", "SET NULL"),
        m.foreign_key("stream_sources", "owner_area_id", "areas", "SET NULL"),
        m.primary_key("stream_sources"),
        m.unique("stream_sources", "key"),
    )
    m.create_indexes("stream_sources", "fallback_asset_id", "kind", "name_folded", "owner_area_id")

    op.create_table(
        "programme_items",
        m.key(),
        m.column("programme_id", sa.Integer()),
        m.column("position", sa.Integer()),
        m.column(
            "kind",
            m.enum("programme_item_kind", "asset", "jingle", "relay", "gap", "text"),
        ),
        m.column("title", sa.String(length=300), nullable=True),
        m.column("asset_id", sa.Integer(), nullable=True),
        m.column("source_id", sa.Integer(), nullable=True),
        m.column("duration_ms", sa.Integer(), nullable=True),
        m.column("text", sa.Text(), nullable=True),
        m.column("voice", sa.String(length=16), nullable=True),
        m.column("rate", sa.Integer(), nullable=True),
        m.foreign_key("programme_items", "asset_id", "media_assets", "SET NULL"),
        m.foreign_key("programme_items", "programme_id", "programmes", "CASCADE"),
        m.foreign_key("programme_items", "source_id", "stream_sources", "RESTRICT"),
        m.primary_key("programme_items"),
        m.unique("programme_items", "programme_id", "position", name="uq_programme_items_position"),
    )
    m.create_indexes("programme_items", "asset_id", "programme_id", "source_id")

    for target, table in (("area", "areas"), ("group", "groups"), ("station", "stations")):
        m.create_link_table(
            f"schedule_rule_{table}",
            ("rule_id", "schedule_rules"),
            (f"{target}_id", table),
            index_right=True,
        )


def downgrade() -> None:
    m.drop_tables(
        "schedule_rule_stations",
        "schedule_rule_groups",
        "schedule_rule_areas",
        "programme_items",
        "stream_sources",
        "schedule_rules",
        "programmes",
    )
