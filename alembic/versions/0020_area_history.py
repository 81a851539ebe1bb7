"""areas: statistics codes, validity; reorganisations, lineage, stations' units over time"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0020"
down_revision = "0017"


def upgrade() -> None:
    with op.batch_alter_table("areas", schema=None) as batch_op:
        batch_op.add_column(m.column("stat_code", sa.String(length=16), nullable=True))
        batch_op.add_column(m.column("valid_from", sa.Date(), nullable=True))
        batch_op.add_column(m.column("valid_to", sa.Date(), nullable=True))
    m.create_indexes("areas", "stat_code")
    op.create_table(
        "area_reorganisations",
        m.key(),
        m.column("name", sa.String(length=200)),
        m.column("effective", sa.Date()),
        m.column("status", m.enum("reorg_status", "applied", "undone")),
        m.column("plan", m.JSONB),
        m.column("undo", m.JSONB),
        m.when("created_at", nullable=False),
        m.column("created_by", sa.String(length=64)),
        m.primary_key("area_reorganisations"),
    )
    m.create_indexes("area_reorganisations", "effective")
    op.create_table(
        "area_lineage",
        m.key(),
        m.column("reorganisation_id", sa.Integer()),
        m.column("old_area_id", sa.Integer()),
        m.column("new_area_id", sa.Integer()),
        m.column("kind", sa.String(length=16)),
        m.column("effective", sa.Date()),
        m.foreign_key("area_lineage", "new_area_id", "areas", "CASCADE"),
        m.foreign_key("area_lineage", "old_area_id", "areas", "CASCADE"),
        m.foreign_key("area_lineage", "reorganisation_id", "area_reorganisations", "CASCADE"),
        m.primary_key("area_lineage"),
    )
    m.create_indexes("area_lineage", "new_area_id", "old_area_id", "reorganisation_id")
    op.create_table(
        "station_units",
        m.key(),
        m.column("station_id", sa.Integer()),
        m.column("area_id", sa.Integer()),
        m.column("valid_from", sa.Date(), nullable=True),
        m.column("valid_to", sa.Date(), nullable=True),
        m.column("reorganisation_id", sa.Integer(), nullable=True),
        m.foreign_key("station_units", "area_id", "areas", "CASCADE"),
        m.foreign_key("station_units", "reorganisation_id", "area_reorganisations", "CASCADE"),
        m.foreign_key("station_units", "station_id", "stations", "CASCADE"),
        m.primary_key("station_units"),
    )
    m.create_indexes("station_units", "area_id", "reorganisation_id", "station_id")


def downgrade() -> None:
    m.drop_tables("station_units", "area_lineage", "area_reorganisations")
    with op.batch_alter_table("areas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_areas_stat_code"))
        batch_op.drop_column("valid_to")
        batch_op.drop_column("valid_from")
        batch_op.drop_column("stat_code")
