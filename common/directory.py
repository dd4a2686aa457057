"""The names of a site, its cameras, zones and rules: what a dashboard shows instead of ids.

The body of `PUT /api/v1/sites/{site_id}/directory` (an admin, or the site's own edge box, or
`zhizhi site register`): a site config's names without anything else of it (no camera sources,
which may hold passwords, no masks, no rule settings).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from common.config import SiteConfig
from common.events import EventType

Name = Annotated[str, Field(min_length=1, max_length=128)]
DirId = Annotated[str, Field(min_length=1, max_length=63)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleEntry(_Strict):
    name: Name | None = None
    type: EventType
    zone: DirId


class CameraEntry(_Strict):
    name: Name | None = None
    zones: dict[DirId, Name | None] = Field(default_factory=dict, max_length=200)
    rules: dict[DirId, RuleEntry] = Field(default_factory=dict, max_length=200)


class SiteDirectory(_Strict):
    """The names of one site's cameras, zones and rules."""

    name: Name | None = None
    cameras: dict[DirId, CameraEntry] = Field(default_factory=dict, max_length=500)


def directory_from_config(config: SiteConfig) -> SiteDirectory:
    """The names of a site config (its sources, masks and rule settings left out)."""
    return SiteDirectory(
        name=config.site.name,
        cameras={
            camera.id: CameraEntry(
                name=camera.name,
                zones={zone.id: zone.name for zone in camera.zones},
                rules={
                    rule.id: RuleEntry(name=rule.name, type=rule.type, zone=rule.zone)
                    for rule in camera.rules
                },
            )
            for camera in config.cameras
        },
    )
