"""Every API token lapses (issue 14): tokens made without an expiry get one.

Tokens made by `zhizhi token create` before this revision never expired. They get 90 days
from the upgrade, time to issue new ones (`zhizhi token create --days`, `zhizhi token list`);
from now on `create_token` always sets `expires_at` and a token without one is refused.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Written by hand, free of imports from the models (it keeps describing this revision).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRACE_DAYS = 90


def upgrade() -> None:
    tokens = sa.table(
        "api_tokens",
        sa.column("expires_at", sa.DateTime(timezone=True)),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
    )
    lapses = datetime.now(UTC) + timedelta(days=GRACE_DAYS)
    op.execute(
        tokens.update()
        .where(tokens.c.expires_at.is_(None), tokens.c.revoked_at.is_(None))
        .values(expires_at=lapses)
    )


def downgrade() -> None:
    """Nothing to undo: an expiry is valid in the earlier schema too."""
