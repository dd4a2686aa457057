"""Command center v2 (issue 15): when an incident's first alert was observed, each situation's
span, transition details (team, level, category, photos), field workers with a team, and the
site directory (names of sites, cameras, zones and rules).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Written by hand, free of imports from the models (it keeps describing this revision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK_USERS_BEFORE = "role IN ('admin', 'operator', 'viewer')"
CHECK_USERS_AFTER = "role IN ('admin', 'operator', 'field', 'viewer')"
CHECK_API_BEFORE = "role IN ('admin', 'operator', 'viewer', 'edge')"
CHECK_API_AFTER = "role IN ('admin', 'operator', 'field', 'viewer', 'edge')"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _roles(table: str, condition: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(f"ck_{table}_role"), type_="check")
        batch.create_check_constraint(op.f(f"ck_{table}_role"), condition)


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("first_observed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("spans", _json(), nullable=True))
    # the first alert's observed time: the earliest message of the incident's situations
    op.execute(
        "UPDATE incidents SET first_observed_at = COALESCE("
        "(SELECT MIN(e.observed_at) FROM events e JOIN incident_situations s"
        " ON s.event_id = e.event_id WHERE s.incident_id = incidents.id), opened_at)"
    )
    with op.batch_alter_table("incidents") as batch:
        batch.alter_column(
            "first_observed_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    op.create_index("ix_incidents_first_observed_at", "incidents", ["first_observed_at"])
    with op.batch_alter_table("incident_transitions") as batch:
        batch.add_column(sa.Column("details", _json(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("team", sa.String(length=128), nullable=True))
    _roles("users", CHECK_USERS_AFTER)
    _roles("api_tokens", CHECK_API_AFTER)
    op.create_table(
        "site_directory",
        sa.Column("site_id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("cameras", _json(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_site_directory")),
    )


def downgrade() -> None:
    op.drop_table("site_directory")
    op.execute("DELETE FROM api_tokens WHERE role = 'field'")
    op.execute("DELETE FROM users WHERE role = 'field'")
    _roles("api_tokens", CHECK_API_BEFORE)
    _roles("users", CHECK_USERS_BEFORE)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("team")
    with op.batch_alter_table("incident_transitions") as batch:
        batch.drop_column("details")
    op.drop_index("ix_incidents_first_observed_at", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("spans")
        batch.drop_column("first_observed_at")
