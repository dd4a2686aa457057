"""SQLAlchemy tables of the server (never imported by the edge).

Events are stored one row per `(event_id, seq)` (contract section 4: exactly once). Times are
timezone-aware everywhere: PostgreSQL keeps `timestamptz`; SQLite keeps UTC text, read back as
UTC by `UTCDateTime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON on SQLite, JSONB on PostgreSQL (indexable, compact).
JsonType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
# A 64-bit key that is still SQLite's rowid alias (autoincrement needs INTEGER there).
BigId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

ROLES = ("admin", "operator", "viewer", "edge")
SOURCES = ("mqtt", "http")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC; naive values read back (SQLite) become UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the server stores aware times only")
        return value.astimezone(UTC)

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventRow(Base):
    """One event message (contract section 3) as received, once per (event_id, seq)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[str] = mapped_column(String(63))
    camera_id: Mapped[str] = mapped_column(String(63))
    zone_id: Mapped[str] = mapped_column(String(63))
    rule_id: Mapped[str] = mapped_column(String(63))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pts_s: Mapped[float] = mapped_column(Float)
    onset_pts_s: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    bbox: Mapped[list[float]] = mapped_column(JsonType)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    model: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    edge_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    source: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("event_id", "seq"),
        CheckConstraint("source IN ('mqtt', 'http')", name="source"),
        CheckConstraint("state IN ('new', 'update', 'end')", name="state"),
        Index("ix_events_observed_at_id", "observed_at", "id"),
        Index("ix_events_site_camera_observed", "site_id", "camera_id", "observed_at"),
        Index("ix_events_type_observed", "type", "observed_at"),
        Index("ix_events_state_observed", "state", "observed_at"),
    )


class EdgeRow(Base):
    """An edge box as last reported on its status topic (retained, also the last will)."""

    __tablename__ = "edges"

    site_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    edge_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[dict[str, Any]] = mapped_column(JsonType)


class CameraStatusRow(Base):
    """A camera of an edge: online or not, why, and when it was last seen online."""

    __tablename__ = "camera_status"

    site_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    edge_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(256))
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        ForeignKeyConstraint(
            ["site_id", "edge_id"], ["edges.site_id", "edges.edge_id"], ondelete="CASCADE"
        ),
    )


class TokenRow(Base):
    """An API bearer token: only its sha256 is kept, never the token itself."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint("role IN ('admin', 'operator', 'viewer', 'edge')", name="role"),
    )


class EvidenceRow(Base):
    """An evidence file (snapshot or clip), content-addressed by its sha256."""

    __tablename__ = "evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(512))  # relative to the media folder
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
