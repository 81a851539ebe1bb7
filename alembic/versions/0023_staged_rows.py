"""staged_rows: a broadcast's per-station rows, written right after its publish

An emergency to every station stored a target row and a play-log plan per station
before its command could leave: at 10,000 stations most of the API call, and on an aged
database a page of each station-first index per station.  The command now leaves once
the command itself is stored, with its station list here; the rows follow at once
(`broadcaster.dispatch.staged`).
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0023"
down_revision = "0022"


def upgrade() -> None:
    op.create_table(
        "staged_rows",
        m.column("command_id", sa.Integer()),
        m.column("station_ids", m.JSONB),
        m.column("direct_ids", m.JSONB),
        m.when("staged_at", nullable=False),
        m.column("play_title", sa.String(length=500), nullable=True),
        m.column("play_kind", sa.String(length=8), nullable=True),
        m.when("play_start"),
        m.column("play_expected_ms", sa.Integer(), nullable=True),
        m.foreign_key("staged_rows", "command_id", "commands", "CASCADE"),
        m.primary_key("staged_rows", "command_id"),
    )


def downgrade() -> None:
    m.drop_tables("staged_rows")
