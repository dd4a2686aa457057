"""The event message (contract section 3) and the MQTT topics (section 4).

One model travels in the replay output, over MQTT and over HTTP. Readers ignore unknown keys,
so an older server accepts a newer edge; a breaking change bumps `schema`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator

SCHEMA = "zhizhi.event/1"
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


class Event(WireModel):
    schema_: Literal["zhizhi.event/1"] = Field(default="zhizhi.event/1", alias="schema")
    event_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
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
