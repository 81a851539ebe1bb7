"""station credentials (per-station MQTT secrets, stored hashed)"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "station_credentials",
        m.key(),
        m.column("station_id", sa.Integer()),
        m.column("secret_hash", sa.String(length=255)),
        m.when("created_at", nullable=False),
        m.column("created_by", sa.String(length=64)),
        m.when("rotated_at"),
        m.column("rotated_by", sa.String(length=64), nullable=True),
        m.column("rotations", sa.Integer()),
        m.foreign_key("station_credentials", "station_id", "stations", "CASCADE"),
        m.primary_key("station_credentials"),
        m.unique("station_credentials", "station_id"),
    )


def downgrade() -> None:
    op.drop_table("station_credentials")
