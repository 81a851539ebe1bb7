"""registry, accounts, audit log"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from kernel import migrations as m

revision = "0001"
down_revision = None

APPEND_ONLY_MESSAGE = "audit_log is append-only"


def upgrade() -> None:
    op.create_table(
        "areas",
        m.key(),
        m.column("code", sa.String(length=64)),
        *m.searchable("name", 200),
        m.column("level", m.enum("area_level", "city", "ward", "commune", "hamlet")),
        m.column("parent_id", sa.Integer(), nullable=True),
        *m.timestamps(),
        m.foreign_key("areas", "parent_id", "areas", "RESTRICT"),
        m.primary_key("areas"),
        m.unique("areas", "code"),
    )
    m.create_indexes("areas", "name_folded", "parent_id")

    op.create_table(
        "audit_log",
        m.key(),
        m.when("at", nullable=False),
        m.column("actor_id", sa.Integer(), nullable=True),
        m.column("actor", sa.String(length=64)),
        m.column("action", sa.String(length=64)),
        m.column("target_type", sa.String(length=32)),
        m.column("targets", m.JSONB),
        m.column("ip", sa.String(length=64), nullable=True),
        m.column("before", m.JSONB, nullable=True),
        m.column("after", m.JSONB, nullable=True),
        m.primary_key("audit_log"),
    )
    m.create_indexes("audit_log", "action", "at")

    op.create_table(
        "users",
        m.key(),
        m.column("username", sa.String(length=64)),
        m.column("full_name", sa.String(length=200), nullable=True),
        m.column("password_hash", sa.String(length=255)),
        m.column(
            "role",
            m.enum("user_role", "admin", "operator", "approver", "technician", "viewer"),
        ),
        m.column("can_emergency", sa.Boolean()),
        m.column("active", sa.Boolean()),
        m.column("failed_logins", sa.Integer()),
        m.when("locked_until"),
        m.when("password_changed_at", nullable=False),
        *m.timestamps(),
        m.primary_key("users"),
        m.unique("users", "username"),
    )
    op.create_table(
        "groups",
        m.key(),
        m.column("gid", sa.String(length=64)),
        *m.searchable("name", 200),
        m.column("description", sa.Text(), nullable=True),
        m.column("builtin", sa.Boolean()),
        m.column("auto", sa.Boolean()),
        m.column("owner_area_id", sa.Integer(), nullable=True),
        *m.timestamps(),
        m.foreign_key("groups", "owner_area_id", "areas", "CASCADE"),
        m.primary_key("groups"),
        m.unique("groups", "gid"),
    )
    m.create_indexes("groups", "name_folded", "owner_area_id")

    op.create_table(
        "stations",
        m.key(),
        m.column("sid", sa.String(length=64)),
        *m.searchable("name", 200),
        m.column("kind", m.enum("station_kind", "hamlet", "smart")),
        m.column("area_id", sa.Integer()),
        m.column("latitude", sa.Float(), nullable=True),
        m.column("longitude", sa.Float(), nullable=True),
        m.column("address", sa.String(length=300), nullable=True),
        m.column("controller_model", sa.String(length=64), nullable=True),
        m.column("firmware", sa.String(length=64), nullable=True),
        m.column("capabilities", m.JSONB),
        m.column("default_volume", sa.Integer()),
        m.column("enabled", sa.Boolean()),
        m.column("sim_iccid", sa.String(length=22), nullable=True),
        m.column("phone", sa.String(length=20), nullable=True),
        m.column("notes", sa.Text(), nullable=True),
        *m.timestamps(),
        m.check("stations", "volume_range", "default_volume BETWEEN 0 AND 100"),
        m.check("stations", "lat", "latitude IS NULL OR (latitude BETWEEN -90 AND 90)"),
        m.check("stations", "lon", "longitude IS NULL OR (longitude BETWEEN -180 AND 180)"),
        m.foreign_key("stations", "area_id", "areas", "RESTRICT"),
        m.primary_key("stations"),
        m.unique("stations", "sid"),
    )
    m.create_indexes("stations", "area_id", "kind", "name_folded")

    op.create_table(
        "tokens",
        m.key(),
        m.column("user_id", sa.Integer()),
        m.column("kind", m.enum("token_kind", "session", "api")),
        m.column("name", sa.String(length=100), nullable=True),
        m.column("token_hash", sa.String(length=64)),
        m.column("prefix", sa.String(length=12)),
        m.when("created_at", nullable=False),
        m.when("expires_at"),
        m.when("last_used_at"),
        m.when("revoked_at"),
        m.column("created_ip", sa.String(length=64), nullable=True),
        m.foreign_key("tokens", "user_id", "users", "CASCADE"),
        m.primary_key("tokens"),
        m.unique("tokens", "token_hash"),
    )
    m.create_indexes("tokens", "user_id")

    m.create_link_table("user_areas", ("user_id", "users"), ("area_id", "areas"))
    m.create_link_table("group_areas", ("group_id", "groups"), ("area_id", "areas"))
    m.create_link_table("group_stations", ("group_id", "groups"), ("station_id", "stations"))
    _append_only_audit_log()


def _append_only_audit_log() -> None:
    """Refuse UPDATE and DELETE on audit_log in the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END; $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    m.drop_tables(
        "group_stations",
        "group_areas",
        "user_areas",
        "tokens",
        "stations",
        "groups",
        "users",
        "audit_log",
        "areas",
    )
