"""MQTT messages refused for good are kept (issue 14): the dead_letters table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Written by hand, free of imports from the models (it keeps describing this revision).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("site_id", sa.String(63), nullable=True),
        sa.Column("edge_id", sa.String(63), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("handled_by", sa.String(128), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.UniqueConstraint("topic", "payload_sha256", name="uq_dead_letters_topic_payload_sha256"),
        sa.CheckConstraint(
            "status IN ('held', 'replayed', 'discarded')", name="ck_dead_letters_status"
        ),
    )
    op.create_index("ix_dead_letters_status_id", "dead_letters", ["status", "id"])
    op.create_index("ix_dead_letters_site_id", "dead_letters", ["site_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_site_id", table_name="dead_letters")
    op.drop_index("ix_dead_letters_status_id", table_name="dead_letters")
    op.drop_table("dead_letters")
