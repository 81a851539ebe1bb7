"""plays: the unique key of a broadcast's plays is (cmd_id, station_id), not
(station_id, cmd_id)

A broadcast stores one play per station.  Keyed station first, each of those rows went
into a different leaf of the index (next to that station's older plays), so a city-wide
emergency rewrote one index page per station, more pages the longer the history, all
on its way out.  Keyed command first, a broadcast's plays sit together at one place of
the index, and the reads by command alone (a stop, the speech that follows, the
reports) have an index they did not have.  Lookups by station and command use either.
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021_h13snd"


def upgrade() -> None:
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_constraint("uq_plays_station_cmd", type_="unique")
        batch_op.create_unique_constraint("uq_plays_cmd_station", ["cmd_id", "station_id"])


def downgrade() -> None:
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_constraint("uq_plays_cmd_station", type_="unique")
        batch_op.create_unique_constraint("uq_plays_station_cmd", ["station_id", "cmd_id"])
