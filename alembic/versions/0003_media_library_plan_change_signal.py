"""media library, plan change signal"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "plan_signal",
        m.key(),
        m.column("generation", sa.Integer()),
        m.when("changed_at", nullable=False),
        m.column("reason", sa.String(length=200)),
        m.primary_key("plan_signal"),
    )
    op.create_table(
        "media_assets",
        m.key(),
        *m.searchable("title", 300),
        m.column("category", sa.String(length=32)),
        m.column("tags", m.JSONB),
        m.column("source", m.enum("asset_source", "upload", "tts", "composed")),
        m.column("status", m.enum("asset_status", "processing", "ready", "failed")),
        m.column("failure_reason", sa.Text(), nullable=True),
        m.column("approval", m.enum("asset_approval", "draft", "approved", "rejected")),
        m.column("approved_by", sa.String(length=64), nullable=True),
        m.when("approved_at"),
        m.column("approval_note", sa.Text(), nullable=True),
        m.column("owner_area_id", sa.Integer(), nullable=True),
        *m.authorship(),
        m.column("original_sha256", sa.String(length=64), nullable=True),
        m.column("original_ext", sa.String(length=8), nullable=True),
        m.column("original_bytes", sa.Integer(), nullable=True),
        m.column("original_filename", sa.String(length=300), nullable=True),
        m.column("sha256", sa.String(length=64), nullable=True),
        m.column("ext", sa.String(length=8), nullable=True),
        m.column("mime", sa.String(length=64), nullable=True),
        m.column("bytes", sa.Integer(), nullable=True),
        m.column("duration_ms", sa.Integer(), nullable=True),
        m.column("loudness_before", sa.Float(), nullable=True),
        m.column("loudness_after", sa.Float(), nullable=True),
        m.column("true_peak_before", sa.Float(), nullable=True),
        m.column("true_peak_after", sa.Float(), nullable=True),
        m.column("processing", m.JSONB, nullable=True),
        m.column("recipe", m.JSONB, nullable=True),
        m.column("peaks", m.JSONB, nullable=True),
        *m.timestamps(),
        m.when("processed_at"),
        m.foreign_key("media_assets", "owner_area_id", "areas", "SET NULL"),
        m.primary_key("media_assets"),
    )
    m.create_indexes(
        "media_assets",
        "approval",
        "category",
        "owner_area_id",
        "sha256",
        "status",
        "title_folded",
        ix_media_assets_original=["original_sha256", "source"],
    )


def downgrade() -> None:
    m.drop_tables("media_assets", "plan_signal")
