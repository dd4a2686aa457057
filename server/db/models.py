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
    LargeBinary,
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

ROLES = ("admin", "operator", "field", "viewer", "edge")
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
    # Set for a login session's token (0002): the user it acts as, and when it lapses.
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A token without a user (0003): the sites it acts for; NULL, every site.
    sites: Mapped[list[str] | None] = mapped_column(JsonType, nullable=True)

    __table_args__ = (
        CheckConstraint("role IN ('admin', 'operator', 'field', 'viewer', 'edge')", name="role"),
        ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
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


# Command center (migration 0002) ---------------------------------------------------------------

INCIDENT_STATUSES = (
    "reported",
    "filed",
    "dispatched",
    "handling",
    "feedback",
    "verified",
    "closed",
    "false_alarm",
)


class UserRow(Base):
    """A person at the command center: argon2 password hash, role and the sites they see."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    sites: Mapped[list[str]] = mapped_column(JsonType)  # ["*"] for every site
    locale: Mapped[str] = mapped_column(String(8))
    disabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The team a field worker belongs to (0004): the orders dispatched to it are theirs.
    team: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (
        CheckConstraint("role IN ('admin', 'operator', 'field', 'viewer')", name="role"),
        CheckConstraint("locale IN ('zh-CN', 'en')", name="locale"),
    )


class LoginAttemptRow(Base):
    """A failed login, counted per username and per client address to limit guessing."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_client_ip_at", "client_ip", "at"),
    )


class IncidentRow(Base):
    """A work order: the situations (event_ids) grouped into it and its lifecycle status."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[str] = mapped_column(String(63))
    camera_id: Mapped[str] = mapped_column(String(63))
    zone_id: Mapped[str] = mapped_column(String(63))
    rule_id: Mapped[str] = mapped_column(String(63))
    event_id: Mapped[str] = mapped_column(String(128))
    # The first situations grouped in (at most EVENT_IDS_SHOWN; all are in incident_situations).
    event_ids: Mapped[list[str]] = mapped_column(JsonType)
    alert_count: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_alert_at: Mapped[datetime] = mapped_column(UTCDateTime())  # observed_at of latest new
    last_observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    onset_pts_s: Mapped[float] = mapped_column(Float)
    last_pts_s: Mapped[float] = mapped_column(Float)
    last_onset_pts_s: Mapped[float] = mapped_column(Float)  # onset of the latest message's event
    score: Mapped[float] = mapped_column(Float)
    bbox: Mapped[list[float]] = mapped_column(JsonType)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    assignee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dispatch_rule: Mapped[str | None] = mapped_column(String(63), nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer)
    silenced: Mapped[bool] = mapped_column(Boolean)
    inhibited: Mapped[bool] = mapped_column(Boolean)
    legal_hold: Mapped[bool] = mapped_column(Boolean)
    # 0004: when the first alert was observed at the camera (opened_at is when it arrived),
    # and how long each situation lasted, by event_id (fire lanes, piles: the incident's dwell).
    first_observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    spans: Mapped[dict[str, float] | None] = mapped_column(JsonType, nullable=True)

    __table_args__ = (
        CheckConstraint(
            "status IN ('reported', 'filed', 'dispatched', 'handling', 'feedback', 'verified', "
            "'closed', 'false_alarm')",
            name="status",
        ),
        Index("ix_incidents_opened_at_id", "opened_at", "id"),
        Index("ix_incidents_status_opened", "status", "opened_at"),
        Index("ix_incidents_group", "site_id", "camera_id", "rule_id", "zone_id", "status"),
        Index("ix_incidents_deadline_at", "deadline_at"),
        Index("ix_incidents_first_observed_at", "first_observed_at"),
    )


class IncidentSituationRow(Base):
    """Which incident each situation (event_id) belongs to: one incident per event_id."""

    __tablename__ = "incident_situations"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    incident_id: Mapped[int] = mapped_column(BigId, index=True)

    __table_args__ = (ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),)


class IncidentEvidenceRow(Base):
    """Which incident an evidence file belongs to (for site scoping, retention and holds)."""

    __tablename__ = "incident_evidence"

    incident_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)

    __table_args__ = (ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),)


class TransitionRow(Base):
    """One step of an incident's lifecycle (or an escalation): who, when, from, to, why."""

    __tablename__ = "incident_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(BigId, index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # 0004: what the step carried, as codes the dashboard translates: the team dispatched,
    # the escalation level, a false alarm's category, the photos attached, why it was quiet.
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)

    __table_args__ = (ForeignKeyConstraint(["incident_id"], ["incidents.id"], ondelete="CASCADE"),)


class AuditRow(Base):
    """Who did or saw what, when, from where (evidence views, actions, logins)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    client_ip: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)


class SilenceRow(Base):
    """A maintenance window: matching incidents are recorded but neither notified nor escalated."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    camera_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    rule_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    comment: Mapped[str] = mapped_column(String(1000))


class WebhookDeliveryRow(Base):
    """One notification to one webhook: pending (with its next try), delivered, or dead."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook: Mapped[str] = mapped_column(String(63))
    url: Mapped[str] = mapped_column(String(2000))
    incident_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )


class SitePlanRow(Base):
    """The site plan image (PNG or JPEG) the dashboard places cameras on."""

    __tablename__ = "site_plans"

    site_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))


class CameraPositionRow(Base):
    """Where a camera sits on its site plan, normalised (0,0) top-left to (1,1) bottom-right."""

    __tablename__ = "camera_positions"

    site_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SiteDirectoryRow(Base):
    """The names of a site, its cameras, zones and rules, as its config gives them (0004):
    registered by an admin or the site's edge, read by the dashboard (ids only as tooltips)."""

    __tablename__ = "site_directory"

    site_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cameras: Mapped[dict[str, Any]] = mapped_column(JsonType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))


class DeadLetterRow(Base):
    """An MQTT message refused for good (issue 14): kept, with why, for an admin to inspect,
    replay once the cause is fixed, or discard. One row per topic and payload (`times`
    counts its arrivals); at most `payload` bytes of it are kept."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
    times: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(8))
    topic: Mapped[str] = mapped_column(String(512))
    site_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    edge_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(Integer)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    handled_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("topic", "payload_sha256"),
        CheckConstraint("status IN ('held', 'replayed', 'discarded')", name="status"),
        Index("ix_dead_letters_status_id", "status", "id"),
        Index("ix_dead_letters_site_id", "site_id", "id"),
    )


MEMBER_STATES = ("live", "stopped", "left", "removed")


class ServerMemberRow(Base):
    """One server process by its MQTT client id (issue 18): `live` while it heartbeats;
    `stopped` when it stopped and kept its broker session (for a restart under the same id);
    `left` when it stopped and ended its session; `removed` when another process found it gone
    longer than the grace and ended its session for it."""

    __tablename__ = "server_members"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    mqtt_group: Mapped[str | None] = mapped_column(String(64), nullable=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    events_taken: Mapped[int] = mapped_column(BigInteger)
    events_stored: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (
        CheckConstraint("state IN ('live', 'stopped', 'left', 'removed')", name="state"),
        Index("ix_server_members_state", "state", "heartbeat_at"),
    )
