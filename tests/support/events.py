"""One factory of contract event messages for the tests of the edge's delivery path."""

from __future__ import annotations

from typing import Any

from common.events import Event


def numbered_event(
    i: int,
    seq: int = 0,
    *,
    site: str = "site-a",
    camera: str = "cam-1",
    details: dict[str, Any] | None = None,
) -> Event:
    """Event `ev-{i:04d}`, message `seq` (0: new, then updates), at stream time `i` s."""
    return Event.model_validate(
        {
            "event_id": f"ev-{i:04d}",
            "seq": seq,
            "state": "new" if seq == 0 else "update",
            "type": "fire_lane",
            "site_id": site,
            "camera_id": camera,
            "zone_id": "lane",
            "rule_id": "lane-blocked",
            "observed_at": "2026-11-23T02:12:35.120Z",
            "pts_s": float(i),
            "onset_pts_s": 0.0,
            "bbox": [0.1, 0.2, 0.3, 0.4],
            "score": 0.9,
            "details": details or {},
        }
    )
