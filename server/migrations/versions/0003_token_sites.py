"""API tokens scoped to sites: an edge box's token sends events of its own site only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Written by hand, free of imports from the models (it keeps describing this revision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # NULL: every site (the tokens made before this revision keep what they could do)
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("sites", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("sites")
