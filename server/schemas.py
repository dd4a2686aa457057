"""Response shapes of the REST API and the values repositories hand to services.

The event message itself is `common.events.Event` (contract section 3); these models wrap it
(pages) or describe server-side state (edges, evidence, health).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_serializer

from common.events import Event, EventState, EventType, format_rfc3339


class ApiModel(BaseModel):
    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Optional equality filters of `GET /api/v1/events`."""

    site_id: str | None = None
    camera_id: str | None = None
    type: EventType | None = None
    state: EventState | None = None


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
