"""Command center: incidents, transitions, users, login attempts, audit log, silences, webhook
deliveries, site plans and camera positions; API tokens linked to users.

Revision ID: 0002
Revises: 0001
Create Date: 2026-02-01

Written by hand, free of imports from the models (it keeps describing this revision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _incident_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["incident_id"],
        ["incidents.id"],
        name=op.f(f"fk_{table}_incident_id_incidents"),
        ondelete="CASCADE",
    )


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _str("username", 64),
        _str("display_name", 128),
        _str("password_hash", 256),
        _str("role", 16),
        sa.Column("sites", _json(), nullable=False),
        _str("locale", 8),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _time("created_at"),
        sa.CheckConstraint("role IN ('admin', 'operator', 'viewer')", name=op.f("ck_users_role")),
        sa.CheckConstraint("locale IN ('zh-CN', 'en')", name=op.f("ck_users_locale")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        _str("username", 64),
        _str("client_ip", 64),
        _time("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    op.create_index("ix_login_attempts_username_at", "login_attempts", ["username", "at"])
    op.create_index("ix_login_attempts_client_ip_at", "login_attempts", ["client_ip", "at"])
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(_time("expires_at", nullable=True))
        batch.create_index(op.f("ix_api_tokens_user_id"), ["user_id"])
        batch.create_foreign_key(
            op.f("fk_api_tokens_user_id_users"), "users", ["user_id"], ["id"], ondelete="CASCADE"
        )


def _create_incidents() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        _str("status", 16),
        _str("type", 32),
        _str("site_id", 63),
        _str("camera_id", 63),
        _str("zone_id", 63),
        _str("rule_id", 63),
        _str("event_id", 128),
        sa.Column("event_ids", _json(), nullable=False),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        _str("state", 16),
        _str("severity", 16),
        _time("opened_at"),
        _time("updated_at"),
        _time("acked_at", nullable=True),
        _time("closed_at", nullable=True),
        _time("last_alert_at"),
        _time("last_observed_at"),
        sa.Column("onset_pts_s", sa.Float(), nullable=False),
        sa.Column("last_pts_s", sa.Float(), nullable=False),
        sa.Column("last_onset_pts_s", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("bbox", _json(), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("evidence", _json(), nullable=False),
        _str("assignee", 128, nullable=True),
        _str("dispatch_rule", 63, nullable=True),
        _time("deadline_at", nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("silenced", sa.Boolean(), nullable=False),
        sa.Column("inhibited", sa.Boolean(), nullable=False),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "status IN ('reported', 'filed', 'dispatched', 'handling', 'feedback', 'verified', "
            "'closed', 'false_alarm')",
            name=op.f("ck_incidents_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_opened_at_id", "incidents", ["opened_at", "id"])
    op.create_index("ix_incidents_status_opened", "incidents", ["status", "opened_at"])
    op.create_index(
        "ix_incidents_group", "incidents", ["site_id", "camera_id", "rule_id", "zone_id", "status"]
    )
    op.create_index("ix_incidents_deadline_at", "incidents", ["deadline_at"])
    op.create_table(
        "incident_situations",
        _str("event_id", 128),
        sa.Column("incident_id", _big_id(), nullable=False),
        _incident_fk("incident_situations"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_incident_situations")),
    )
    op.create_index(
        op.f("ix_incident_situations_incident_id"), "incident_situations", ["incident_id"]
    )
    op.create_table(
        "incident_evidence",
        sa.Column("incident_id", _big_id(), nullable=False),
        _str("sha256", 64),
        _incident_fk("incident_evidence"),
        sa.PrimaryKeyConstraint("incident_id", "sha256", name=op.f("pk_incident_evidence")),
    )
    op.create_index(op.f("ix_incident_evidence_sha256"), "incident_evidence", ["sha256"])
    op.create_table(
        "incident_transitions",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("incident_id", _big_id(), nullable=False),
        _str("action", 32),
        _str("from_status", 16, nullable=True),
        _str("to_status", 16),
        _str("by", 128),
        _time("at"),
        _str("note", 2000, nullable=True),
        _incident_fk("incident_transitions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_transitions")),
    )
    op.create_index(
        op.f("ix_incident_transitions_incident_id"), "incident_transitions", ["incident_id"]
    )


def _create_operations() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        _time("at"),
        _str("actor", 128),
        _str("role", 16),
        _str("action", 64),
        _str("target", 256),
        _str("client_ip", 64),
        sa.Column("details", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _str("site_id", 63, nullable=True),
        _str("camera_id", 63, nullable=True),
        _str("rule_id", 63, nullable=True),
        _str("type", 32, nullable=True),
        _time("starts_at"),
        _time("ends_at"),
        _str("created_by", 128),
        _time("created_at"),
        _str("comment", 1000),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    op.create_index(op.f("ix_silences_ends_at"), "silences", ["ends_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        _str("webhook", 63),
        _str("url", 2000),
        sa.Column("incident_id", _big_id(), nullable=True),
        _str("kind", 32),
        sa.Column("payload", _json(), nullable=False),
        _str("status", 16),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at"),
        _str("last_error", 1000, nullable=True),
        _time("created_at"),
        _time("finished_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_deliveries_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_status_next", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_table(
        "site_plans",
        _str("site_id", 63),
        _str("content_type", 32),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _time("updated_at"),
        _str("updated_by", 128),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_site_plans")),
    )
    op.create_table(
        "camera_positions",
        _str("site_id", 63),
        _str("camera_id", 63),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("site_id", "camera_id", name=op.f("pk_camera_positions")),
    )


def upgrade() -> None:
    _create_users()
    _create_incidents()
    _create_operations()


def downgrade() -> None:
    for table in (
        "camera_positions",
        "site_plans",
        "webhook_deliveries",
        "silences",
        "audit_log",
        "incident_transitions",
        "incident_evidence",
        "incident_situations",
        "incidents",
    ):
        op.drop_table(table)
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint(op.f("fk_api_tokens_user_id_users"), type_="foreignkey")
        batch.drop_index(op.f("ix_api_tokens_user_id"))
        batch.drop_column("expires_at")
        batch.drop_column("user_id")
    op.drop_table("login_attempts")
    op.drop_table("users")
