"""Server processes record themselves (issue 18): the server_members table.

Each `zhizhi server` process keeps one row by its MQTT client id: where it runs, when it
started, its latest heartbeat and the events it took from the shared subscription. A live
process removes a member whose heartbeat is older than the grace (its broker session ended).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Written by hand, free of imports from the models (it keeps describing this revision).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_members",
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("mqtt_group", sa.String(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events_taken", sa.BigInteger(), nullable=False),
        sa.Column("events_stored", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("client_id", name="pk_server_members"),
        sa.CheckConstraint(
            "state IN ('live', 'stopped', 'left', 'removed')", name="ck_server_members_state"
        ),
    )
    op.create_index("ix_server_members_state", "server_members", ["state", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_server_members_state", table_name="server_members")
    op.drop_table("server_members")
