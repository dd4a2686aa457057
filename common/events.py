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

    # NaN and infinities are no time, score or box: refused, never stored as null (issue 14)
    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

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


LoadState = Literal["ok", "degraded", "overloaded", "starting", "restarting"]


class LoadProblem(WireModel):
    """Why a camera is not analysed as its rules need: a stable `code` a dashboard translates,
    with the figures behind it in `params`, and an English `detail` for logs."""

    code: Literal[
        "frames_dropped",  # frames the rules needed were dropped before analysis
        "analysis_starved",  # a rule got fewer looks than it needs
        "lagging",  # the analysis runs behind live
        "detector_slow",  # detections waited long in the box's detector queue
        "frame_rules_behind",  # every-frame rules are behind or lost consecutive frames
        "source_flooding",  # the camera sends more than the box can decode
        "restarted",  # the camera's worker crashed and was restarted
    ]
    params: dict[str, float | int | str] = Field(default_factory=dict)
    detail: str = ""


class RuleCoverage(WireModel):
    """How much of what a rule needs it got over the report window."""

    need_fps: float = Field(ge=0, description="looks a second the rule needs")
    got_fps: float = Field(ge=0, description="looks a second it got")
    coverage: UnitFloat = Field(description="got / need, at most 1")
    max_gap_s: float = Field(ge=0, description="the longest time between two looks")
    holding: bool = Field(
        default=False,
        description="the rule holds its judgement: it has not seen enough of its zone to raise "
        "or end anything",
    )


class CameraLoad(WireModel):
    """How the edge keeps up with one camera over the last `window_s` (issue 13)."""

    window_s: float = Field(ge=0)
    state: LoadState = "ok"
    camera_fps: float = Field(default=0.0, ge=0, description="frames read from the camera")
    frame_rule_fps: float | None = Field(
        default=None, ge=0, description="frames the every-frame rules saw (None: none configured)"
    )
    analysis_fps: float | None = Field(
        default=None, ge=0, description="zone analyses a second (None: no zone rule)"
    )
    target_analysis_fps: float | None = Field(default=None, ge=0)
    detection_fps: float = Field(default=0.0, ge=0, description="detector and pose runs")
    dropped_fps: float = Field(default=0.0, ge=0, description="frames dropped unanalysed")
    lag_s: float = Field(default=0.0, ge=0, description="how far behind live the analysis is")
    detector_wait_ms: float = Field(default=0.0, ge=0, description="p95 wait for the detector")
    cpu: float = Field(default=0.0, ge=0, description="share of one core the camera's process used")
    restarts: int = Field(default=0, ge=0)
    coverage: dict[str, RuleCoverage] = Field(default_factory=dict, description="by rule id")
    problems: list[LoadProblem] = Field(default_factory=list)


class DetectorLoad(WireModel):
    """The box's shared detection service over the last report window."""

    runs_per_s: float = Field(default=0.0, ge=0, description="inferences a second (batches)")
    images_per_s: float = Field(default=0.0, ge=0)
    busy: UnitFloat = Field(default=0.0, description="share of the window spent inferring")
    queue: int = Field(default=0, ge=0, description="requests waiting now")
    wait_p95_ms: float = Field(default=0.0, ge=0)
    batch_mean: float = Field(default=0.0, ge=0)
    shed: int = Field(default=0, ge=0, description="requests dropped as too late to matter")
    wait_p95_ms_by_need: dict[str, float] = Field(
        default_factory=dict,
        description="p95 wait by what the runs were for: frame_rule, evidence, due, routine, "
        "recheck",
    )
    runs_by_need: dict[str, int] = Field(default_factory=dict)


class BoxLoad(WireModel):
    """The edge box as a whole over the last report window."""

    window_s: float = Field(default=0.0, ge=0)
    cores: int = Field(default=1, ge=1)
    cpu: UnitFloat = Field(default=0.0, description="share of all the box's cores in use")
    process_cpu: float = Field(
        default=0.0, ge=0, description="cores used by the edge's own processes"
    )
    memory_mb: float = Field(default=0.0, ge=0, description="resident memory of the edge")
    memory_available_mb: float | None = Field(default=None, ge=0)
    load1: float | None = Field(default=None, ge=0)
    detector: DetectorLoad = Field(default_factory=DetectorLoad)
    overloaded: bool = False


class CameraStatus(WireModel):
    online: bool
    reason: str = ""
    ts: float | None = None  # time.time() of the last change
    reason_code: str | None = Field(
        default=None,
        description="stable code of `reason` for translation: frames_arriving, cannot_open, "
        "read_failed, end_of_file, reader_crashed, stopped",
    )
    load: CameraLoad | None = None


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
    box: BoxLoad | None = None  # how the box keeps up (issue 13); cameras[].load per camera


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
