"""Response shapes of the REST API and the values repositories hand to services.

The event message itself is `common.events.Event` (contract section 3); these models wrap it
(pages) or describe server-side state (edges, evidence, health).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from common.directory import CameraEntry, SiteDirectory
from common.events import BoxLoad, CameraLoad, Event, EventState, EventType, format_rfc3339


class ApiModel(BaseModel):
    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Optional equality filters of `GET /api/v1/events`."""

    site_id: str | None = None
    camera_id: str | None = None
    type: EventType | None = None
    state: EventState | None = None
    sites: frozenset[str] | None = None  # the caller's sites; None: every site


class EventPage(ApiModel):
    items: list[Event]
    total: int


class StoredResponse(ApiModel):
    stored: bool


class CameraView(ApiModel):
    camera_id: str
    online: bool
    reason: str
    last_seen: datetime | None

    @field_serializer("last_seen")
    def _rfc3339(self, value: datetime | None) -> str | None:
        return None if value is None else format_rfc3339(value)


class EdgeView(ApiModel):
    site_id: str
    edge_id: str
    state: str
    online: bool
    last_seen: datetime
    cameras: list[CameraView]
    outbox: dict[str, int]
    box: BoxLoad | None = None  # how the box keeps up (from its status message, issue 13)

    @field_serializer("last_seen")
    def _rfc3339(self, value: datetime) -> str:
        return format_rfc3339(value)


class EdgeList(ApiModel):
    items: list[EdgeView]
    total: int


class EvidenceInfo(ApiModel):
    sha256: str
    content_type: str
    size: int
    event_id: str | None = None


class EvidenceStored(EvidenceInfo):
    stored: bool  # False when the same file was stored already


class Health(ApiModel):
    status: str  # "ok" or "unavailable"
    database: bool
    broker: bool
    ingest: bool = True  # MQTT ingestion runs: subscribed, worker alive, store answering
    media: bool = True  # the media folder takes evidence (false after a write found it full)


# Command center --------------------------------------------------------------------------------


class TimedModel(ApiModel):
    """Serialises every datetime field as RFC 3339 UTC with milliseconds (like events)."""

    @field_serializer("*", when_used="json")
    def _times(self, value: object) -> object:
        return format_rfc3339(value) if isinstance(value, datetime) else value


EvidenceState = Literal["stored", "pending", "missing"]


class EvidenceRef(TimedModel):
    kind: str  # snapshot, clip (from the edge) or photo (from a field worker)
    sha256: str
    content_type: str
    role: str | None = None
    url: str  # /api/v1/evidence/{sha256}
    event_id: str | None = None  # the situation (alert) it belongs to
    observed_at: datetime | None = None  # when that message was observed, or a photo taken
    by: str | None = None  # who uploaded a photo
    state: EvidenceState = "stored"  # pending: named, not uploaded yet; missing: given up


class IncidentView(TimedModel):
    id: int
    status: str
    type: str
    site_id: str
    camera_id: str
    zone_id: str
    rule_id: str
    event_id: str
    event_ids: list[str]
    alert_count: int
    state: str
    opened_at: datetime  # when the server received the first alert
    first_observed_at: datetime  # when the camera saw it (发生时间)
    last_alert_at: datetime
    updated_at: datetime
    acked_at: datetime | None
    closed_at: datetime | None
    onset_pts_s: float
    severity: str
    score: float
    bbox: list[float]
    details: dict[str, Any]
    dwell_s: float | None  # lanes and piles: every situation's span, together
    latest_dwell_s: float | None  # the latest situation's
    evidence: list[EvidenceRef]
    assignee: str | None
    deadline_at: datetime | None
    escalation_level: int
    overdue: bool  # not acknowledged in time (also once escalated past the last deadline)
    silenced: bool
    inhibited: bool
    legal_hold: bool
    allowed_actions: list[str]


class TransitionView(TimedModel):
    action: str
    from_status: str | None
    to_status: str
    by: str  # username or token name ("system" for reports and escalations)
    by_name: str | None = None  # the user's display name
    system: bool = False
    at: datetime
    note: str | None
    details: dict[str, Any] = Field(default_factory=dict)  # team, level, category, photos


class IncidentDetail(IncidentView):
    events: list[Event]
    history: list[TransitionView]


class IncidentPage(ApiModel):
    items: list[IncidentView]
    total: int


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
PhotoList = Annotated[list[Sha256Hex], Field(default_factory=list, max_length=20)]


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000)
    photos: PhotoList  # sha256 of photos attached through POST .../photos


class PhotoNoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)
    photos: PhotoList


FalseAlarmCategory = Literal[
    "lighting", "wrong_object", "authorised_activity", "test", "duplicate", "other"
]


class FalseAlarmBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)
    category: FalseAlarmCategory | None = Field(default=None, description="误报原因")


class BulkAckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class BulkResult(ApiModel):
    id: int
    ok: bool
    status: str | None = None  # the incident's status afterwards
    error: Literal["not_found", "forbidden", "not_allowed"] | None = None


class BulkResults(ApiModel):
    items: list[BulkResult]


class CountersView(ApiModel):
    unacknowledged: int  # 未处理
    urgent: int  # 紧急
    overdue: int  # 已超时
    alarming: list[int]  # the alarm rings until these are acknowledged
    my_orders: int | None = None  # a field worker's open orders


class PhotoStored(EvidenceRef):
    stored: bool  # False when the same photo was stored already


class DispatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team: str = Field(min_length=1, max_length=128)
    note: str | None = Field(default=None, max_length=2000)


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hold: bool = True
    note: str | None = Field(default=None, max_length=2000)


Locale = Literal["zh-CN", "en"]


class UserView(ApiModel):
    username: str
    display_name: str
    role: str
    sites: list[str]  # ["*"]: every site
    locale: Locale
    team: str | None = None  # a field worker's team (我的工单: the orders dispatched to it)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(ApiModel):
    token: str
    user: UserView


class CameraItem(TimedModel):
    site_id: str
    edge_id: str
    camera_id: str
    online: bool
    reason: str  # the edge's words (English, for logs); the dashboard shows reason_code
    reason_code: str | None = None  # frames_arriving, cannot_open, ... (translated)
    last_seen: datetime | None
    plan_xy: tuple[float, float] | None
    load: CameraLoad | None = None  # how the edge keeps up with this camera (issue 13)
    latest_snapshot: EvidenceRef | None = None  # the newest snapshot stored for this camera


class CameraItems(ApiModel):
    items: list[CameraItem]


# Site directory: names from the sites' configs -------------------------------------------------

# The body of PUT .../directory: common.directory.SiteDirectory (shared with the edge and CLI).
SiteDirectoryBody = SiteDirectory


class SiteEntry(TimedModel):
    site_id: str
    name: str | None
    cameras: dict[str, CameraEntry]
    has_plan: bool  # a site plan image is uploaded
    updated_at: datetime | None


class SiteList(ApiModel):
    items: list[SiteEntry]


class PlanPosition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)


class TypeDayCount(ApiModel):
    day: str  # YYYY-MM-DD (UTC)
    type: str
    count: int


class Percentiles(ApiModel):
    p50: float | None
    p90: float | None


class FalseAlarmRate(ApiModel):
    site_id: str
    camera_id: str
    rule_id: str
    incidents: int
    false_alarms: int
    rate: float


class Stats(ApiModel):
    per_type_day: list[TypeDayCount]
    time_to_ack_s: Percentiles
    time_to_close_s: Percentiles
    false_alarm_rate: list[FalseAlarmRate]


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once in UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class SilenceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: str | None = Field(default=None, min_length=1, max_length=63)
    camera_id: str | None = Field(default=None, min_length=1, max_length=63)
    rule_id: str | None = Field(default=None, min_length=1, max_length=63)
    type: EventType | None = None
    starts_at: UtcDatetime | None = Field(default=None, description="Default: now")
    ends_at: UtcDatetime
    comment: str = Field(default="", max_length=1000)


class SilenceView(TimedModel):
    id: int
    site_id: str | None
    camera_id: str | None
    rule_id: str | None
    type: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime
    comment: str
    active: bool


class SilenceList(ApiModel):
    items: list[SilenceView]


class AuditEntry(TimedModel):
    id: int
    at: datetime
    actor: str
    actor_name: str | None = None  # the user's display name, when the actor is a user
    role: str
    action: str
    target: str
    client_ip: str
    details: dict[str, Any]


class AuditPage(ApiModel):
    items: list[AuditEntry]
    total: int


class DeadLetter(TimedModel):
    id: int
    webhook: str
    url: str
    incident_id: int | None
    kind: str
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]


class DeadLetterList(ApiModel):
    items: list[DeadLetter]


class ServerMember(ApiModel):
    """One server process (issue 18): `live` while it heartbeats (`late` once its heartbeat is
    older than two periods), `stopped` (session kept for a restart), `left` (session ended
    when it stopped), `removed` (gone longer than the grace: another process ended its
    session, see the audit log)."""

    client_id: str
    group: str | None
    host: str
    pid: int
    state: str
    late: bool
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    events_taken: int
    events_stored: int
    ended_at: datetime | None
    ended_by: str | None

    @field_serializer("started_at", "heartbeat_at", "ended_at")
    def _rfc3339(self, value: datetime | None) -> str | None:
        return None if value is None else format_rfc3339(value)


class ServerMemberList(ApiModel):
    items: list[ServerMember]
    total: int
    grace_s: float
    heartbeat_s: float
