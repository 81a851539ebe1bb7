"""alert sources: an optional X.509 certificate (PEM) their alerts must be signed with"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0021_h13snd"
down_revision = "0020"


def upgrade() -> None:
    with op.batch_alter_table("alert_sources", schema=None) as batch_op:
        batch_op.add_column(m.column("certificate", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_sources", schema=None) as batch_op:
        batch_op.drop_column("certificate")
