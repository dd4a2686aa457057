"""The site directory: the names a site's config gives its site, cameras, zones and rules, so
the dashboard shows 演示小区 and 高空抛物 A栋东立面 instead of ids (ids stay as tooltips).

An admin (or the site's own edge box) registers a site's names with
`PUT /api/v1/sites/{site_id}/directory`; `common.directory.directory_from_config` makes that
body from a site config, without its camera sources (which may hold passwords).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.directory import CameraEntry, SiteDirectory, directory_from_config
from server.db.models import CameraStatusRow, IncidentRow, SiteDirectoryRow, SitePlanRow
from server.schemas import SiteEntry

__all__ = ["directory_from_config", "list_sites", "search_names", "store_directory"]


def store_directory(
    session: Session, site_id: str, body: SiteDirectory, *, by: str, at: datetime
) -> None:
    """Replace the site's names (the caller commits)."""
    row = session.get(SiteDirectoryRow, site_id)
    if row is None:
        row = SiteDirectoryRow(site_id=site_id)
        session.add(row)
    row.name = body.name
    row.cameras = {key: value.model_dump(mode="json") for key, value in body.cameras.items()}
    row.updated_at, row.updated_by = at, by


def _visible(site_id: str, sites: Collection[str] | None) -> bool:
    return sites is None or site_id in sites


def list_sites(
    session: Session, sites: Collection[str] | None, *, own: Collection[str] = ()
) -> list[SiteEntry]:
    """Every site the caller may see that the server knows of (named, with cameras, a plan
    or incidents, or among the caller's own), with its names and whether it has a plan."""
    named = {row.site_id: row for row in session.scalars(select(SiteDirectoryRow))}
    planned = set(session.scalars(select(SitePlanRow.site_id)))
    known = set(named) | planned | set(own)
    known |= set(session.scalars(select(CameraStatusRow.site_id).distinct()))
    known |= set(session.scalars(select(IncidentRow.site_id).distinct()))
    entries = []
    for site_id in sorted(s for s in known if _visible(s, sites)):
        row = named.get(site_id)
        entries.append(
            SiteEntry(
                site_id=site_id,
                name=row.name if row else None,
                cameras=(
                    {key: CameraEntry.model_validate(value) for key, value in row.cameras.items()}
                    if row
                    else {}
                ),
                has_plan=site_id in planned,
                updated_at=row.updated_at if row else None,
            )
        )
    return entries


def search_names(
    session: Session, text: str, sites: Collection[str] | None
) -> tuple[frozenset[str], frozenset[str]]:
    """The camera ids and zone ids whose names contain `text` (case-insensitive)."""
    wanted = text.strip().lower()
    cameras: set[str] = set()
    zones: set[str] = set()
    if not wanted:
        return frozenset(), frozenset()
    for row in session.scalars(select(SiteDirectoryRow)):
        if not _visible(row.site_id, sites):
            continue
        for camera_id, raw in row.cameras.items():
            camera = CameraEntry.model_validate(raw)
            if camera.name and wanted in camera.name.lower():
                cameras.add(camera_id)
            zones |= {z for z, name in camera.zones.items() if name and wanted in name.lower()}
            for rule in camera.rules.values():
                if rule.name and wanted in rule.name.lower():
                    zones.add(rule.zone)
    return frozenset(cameras), frozenset(zones)
