"""The event message (contract section 3) and the MQTT topics (section 4).

One model travels in the replay output, over MQTT and over HTTP. Readers ignore unknown keys,
so an older server accepts a newer edge; a breaking change bumps `schema`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator

SCHEMA = "zhizhi.event/1"
MAX_SEQ = 2**31 - 1  # messages of one situation; what every database stores as an integer
EventType = Literal["fire_lane", "garbage_pile", "falling_object", "person_fall"]
EventState = Literal["new", "update", "end"]
UnitFloat = Annotated[float, Field(ge=0.0, le=1.0)]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelInfo(WireModel):
    name: str
    version: str
    sha256: str


class Evidence(WireModel):
    kind: Literal["snapshot", "clip"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    content_type: str
    url: str
    role: str | None = Field(
        default=None, description="What the file shows: onset, latest, closing, before, after"
    )
    start_pts_s: float | None = Field(
        default=None, description="A clip: stream seconds of its first frame"
    )
    redaction: dict[str, Any] | None = Field(
        default=None,
        description="What was hidden in the file before it was written: the privacy masks "
        "applied (indices into the camera's privacy_masks) and their style, faces blurred",
    )


class Event(WireModel):
    schema_: Literal["zhizhi.event/1"] = Field(default="zhizhi.event/1", alias="schema")
    event_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0, le=MAX_SEQ)
    state: EventState
    type: EventType
    site_id: str = Field(min_length=1, max_length=63)
    camera_id: str = Field(min_length=1, max_length=63)
    zone_id: str = Field(min_length=1, max_length=63)
    rule_id: str = Field(min_length=1, max_length=63)
    observed_at: AwareDatetime
    pts_s: float = Field(ge=0)
    onset_pts_s: float = Field(ge=0)
    bbox: tuple[UnitFloat, UnitFloat, UnitFloat, UnitFloat]
    score: UnitFloat
    details: dict[str, Any] = Field(default_factory=dict)
    model: ModelInfo | None = None
    evidence: list[Evidence] = Field(default_factory=list)

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        if x2 < x1 or y2 < y1:
            raise ValueError("bbox must be [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        return box

    @field_serializer("observed_at")
    def _rfc3339(self, value: datetime) -> str:
        return format_rfc3339(value)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def format_rfc3339(value: datetime) -> str:
    """UTC, millisecond precision, with a trailing Z: 2026-11-23T02:12:35.120Z."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def events_topic(site_id: str, edge_id: str, camera_id: str) -> str:
    return f"zhizhi/v1/{site_id}/{edge_id}/{camera_id}/events"


def status_topic(site_id: str, edge_id: str) -> str:
    return f"zhizhi/v1/{site_id}/{edge_id}/status"


def ack_topic(site_id: str, edge_id: str) -> str:
    return f"zhizhi/v1/{site_id}/{edge_id}/ack"


def cmd_topic(site_id: str, edge_id: str) -> str:
    return f"zhizhi/v1/{site_id}/{edge_id}/cmd"


class AckMessage(WireModel):
    """Server → edge on zhizhi/v1/{site}/{edge}/ack once the server has stored that message."""

    event_id: str
    seq: int = Field(ge=0, le=MAX_SEQ)
    rejected: str | None = Field(
        default=None,
        description="Set when the server refuses the message for good (invalid, a topic that "
        "disagrees with the payload): the edge stops re-sending it and logs the reason",
    )


class CameraStatus(WireModel):
    online: bool
    reason: str = ""
    ts: float | None = None  # time.time() of the last change


class ModelStatus(WireModel):
    """The model a slot of the edge runs (by the registry name it was configured with)."""

    name: str
    version: str
    sha256: str
    rollout: Literal["running", "rolled_back", "failed"] = "running"
    detail: str = ""


class StatusMessage(WireModel):
    """Edge → server on zhizhi/v1/{site}/{edge}/status, retained, also the last will."""

    state: Literal["online", "offline"]
    edge_id: str | None = None
    site_id: str | None = None
    ts: float | None = None
    cameras: dict[str, CameraStatus] = Field(default_factory=dict)
    outbox: dict[str, int] = Field(default_factory=dict)  # pending, shed_events, shed_evidence
    models: dict[str, ModelStatus] = Field(default_factory=dict)  # by configured model name


TOPIC_PREFIX = "zhizhi/v1"


def parse_topic(topic: str) -> tuple[str, str, str | None, str] | None:
    """(site_id, edge_id, camera_id or None, kind) of a contract topic, or None if it is not one.

    >>> parse_topic("zhizhi/v1/garden-court/box-1/gate-east/events")
    ('garden-court', 'box-1', 'gate-east', 'events')
    >>> parse_topic("zhizhi/v1/garden-court/box-1/status")
    ('garden-court', 'box-1', None, 'status')
    """
    parts = topic.split("/")
    if parts[:2] != TOPIC_PREFIX.split("/"):
        return None
    if len(parts) == 6 and parts[5] == "events":
        return parts[2], parts[3], parts[4], "events"
    if len(parts) == 5 and parts[4] in ("status", "ack", "cmd"):
        return parts[2], parts[3], None, parts[4]
    return None
