"""The feedback loop: incidents the command center marked false alarm (or closed as real) go
back to the ML engineers as a labelling task, with the boxes the model drew as pre-annotations.

`zhizhi data export-feedback` reads incidents through the server's REST API (so every evidence
download is in the server's audit log, and it works from any machine with a token) and writes a
folder in CVAT's "YOLO 1.1" layout, which CVAT imports as a task's annotations and which
`zhizhi data import cvat-yolo` reads back after correction:

    obj.names  obj.data  train.txt
    obj_train_data/<incident>-<event>_<frame>.jpg   the frame the alert was raised on
    obj_train_data/<incident>-<event>_<frame>.txt   the model's boxes on it (YOLO format)
    clips/<incident>-<event>.mp4                    the evidence clip, for context
    manifest.json                                   incident, verdict, note, event, model
    README.txt                                      how to label it in CVAT

Frames come from the evidence clip (clean frames: masks and blurred faces, no drawing); when an
event has no clip, from its snapshot, marked `annotated: true` in the manifest because the
boxes and caption are drawn on it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import numpy.typing as npt

from common.events import Event, Evidence

Image = npt.NDArray[np.uint8]
PAGE = 100

README = """Zhizhi feedback task ({count} frames from {incidents} incidents)

Each frame is the moment an alert was raised; its boxes are what the model claimed
(manifest.json says which incident, the operator's verdict and note). In CVAT:
  1. create a task from the images in obj_train_data/ (labels: the names in obj.names);
  2. Actions > Upload annotations > "YOLO 1.1", this folder zipped;
  3. correct: delete boxes that are not the object, fix labels, add missed objects; a frame
     left with no box is a checked background frame (a false alarm's best use);
  4. export as "YOLO 1.1" with images, then
     zhizhi data import cvat-yolo EXPORT_FOLDER --out labels.json --mapping MAPPING.yaml
"""


@dataclass(frozen=True, slots=True)
class ClaimedBox:
    """A box the model (or the rule) drew, with the class it claimed."""

    label: str
    box: tuple[float, float, float, float]
    score: float | None = None


@dataclass(slots=True)
class FeedbackItem:
    incident_id: int
    status: str
    type: str
    site_id: str
    camera_id: str
    rule_id: str
    event_id: str
    pts_s: float
    image: str
    annotated: bool
    boxes: list[dict[str, Any]]
    model: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    clip: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackSummary:
    incidents: int
    frames: int
    skipped: list[str]
    labels: list[str]


class FeedbackError(RuntimeError):
    """The server could not be read (unreachable, refused the token)."""


def claimed_boxes(event: Event) -> list[ClaimedBox]:
    """What the alert claimed, as labelled boxes: the vehicles and objects in a lane, the
    contents of a pile, the person who fell, the fall's trajectory; the event's own box with
    its type as label when the rule names nothing finer."""
    details = event.details
    found: list[ClaimedBox] = []
    for key in ("blockers", "contents"):
        for item in details.get(key) or []:
            box = item.get("bbox")
            if isinstance(box, list) and len(box) == 4:
                label = str(item.get("label") or item.get("kind") or event.type)
                found.append(ClaimedBox(label, _box(box), item.get("score")))
    if not found and event.type == "person_fall":
        found.append(ClaimedBox("person", _box(event.bbox), event.score))
    if not found:
        found.append(ClaimedBox(event.type, _box(event.bbox), event.score))
    return [c for c in found if c.box[2] > c.box[0] and c.box[3] > c.box[1]]


def _box(values: Sequence[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (min(1.0, max(0.0, float(v))) for v in values)
    return (x1, y1, x2, y2)


def yolo_line(class_id: int, box: tuple[float, float, float, float]) -> str:
    x1, y1, x2, y2 = box
    return f"{class_id} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def frame_at(clip: bytes, start_pts_s: float | None, pts_s: float) -> Image | None:
    """The clip's frame closest to stream time `pts_s` (the clip starts at `start_pts_s`; when
    unknown, its last frame: clips end at or after the alert)."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        tmp.write(clip)
        tmp.flush()
        capture = cv2.VideoCapture(tmp.name)
        best: Image | None = None
        best_gap = float("inf")
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                if start_pts_s is None:
                    best = np.asarray(image, dtype=np.uint8)
                    continue
                at = start_pts_s + capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                gap = abs(at - pts_s)
                if gap < best_gap:
                    best, best_gap = np.asarray(image, dtype=np.uint8), gap
        finally:
            capture.release()
    return best


class FeedbackClient:
    """The few REST calls the export needs."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def _get(self, path: str, **params: Any) -> httpx.Response:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as error:
            raise FeedbackError(f"server unreachable: {error}") from error
        if response.status_code in (401, 403):
            raise FeedbackError(f"{path}: the server refused the token ({response.status_code})")
        response.raise_for_status()
        return response

    def incidents(self, status: str, site_id: str | None, type_: str | None) -> Iterator[int]:
        offset = 0
        while True:
            params: dict[str, Any] = {"status": status, "limit": PAGE, "offset": offset}
            params.update({k: v for k, v in (("site_id", site_id), ("type", type_)) if v})
            page = self._get("/api/v1/incidents", **params).json()
            yield from (int(item["id"]) for item in page["items"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    def incident(self, incident_id: int) -> dict[str, Any]:
        detail: dict[str, Any] = self._get(f"/api/v1/incidents/{incident_id}").json()
        return detail

    def evidence(self, evidence: Evidence) -> bytes:
        return self._get(f"/api/v1/evidence/{evidence.sha256}", download="true").content


def export_feedback(
    client: httpx.Client,
    out: Path,
    statuses: Sequence[str] = ("false_alarm",),
    site_id: str | None = None,
    type_: str | None = None,
    since: str | None = None,
) -> FeedbackSummary:
    """Write the labelling task for the incidents of these statuses into `out` (a folder)."""
    api = FeedbackClient(client)
    frames_dir = out / "obj_train_data"
    clips_dir = out / "clips"
    frames_dir.mkdir(parents=True, exist_ok=True)
    clips_dir.mkdir(exist_ok=True)
    labels: list[str] = []
    items: list[FeedbackItem] = []
    skipped: list[str] = []
    incidents = 0
    for status in statuses:
        for incident_id in api.incidents(status, site_id, type_):
            detail = api.incident(incident_id)
            if since is not None and str(detail["opened_at"]) < since:
                continue
            incidents += 1
            notes = [str(h["note"]) for h in detail.get("history", []) if h.get("note")]
            alerts = [Event.model_validate(e) for e in detail["events"]]
            for event in [e for e in alerts if e.state == "new"]:
                item = _item(api, detail, event, notes, frames_dir, clips_dir, labels)
                if item is None:
                    skipped.append(f"incident {incident_id} event {event.event_id}: no evidence")
                else:
                    items.append(item)
    _write_index(out, items, labels, incidents)
    return FeedbackSummary(incidents, len(items), skipped, labels)


def _item(
    api: FeedbackClient,
    detail: dict[str, Any],
    event: Event,
    notes: list[str],
    frames_dir: Path,
    clips_dir: Path,
    labels: list[str],
) -> FeedbackItem | None:
    stem = f"incident{detail['id']}-{event.event_id[:12]}"
    clip = next((e for e in event.evidence if e.kind == "clip"), None)
    image: Image | None = None
    clip_name = None
    annotated = False
    if clip is not None:
        data = api.evidence(clip)
        clip_name = f"clips/{stem}.mp4"
        (clips_dir / f"{stem}.mp4").write_bytes(data)
        image = frame_at(data, clip.start_pts_s, event.pts_s)
    if image is None:
        snap = next((e for e in event.evidence if e.kind == "snapshot"), None)
        if snap is None:
            return None
        decoded = cv2.imdecode(np.frombuffer(api.evidence(snap), np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            return None
        image, annotated = np.asarray(decoded, dtype=np.uint8), True
    frame = round(event.pts_s * 1000)  # the name says which moment: milliseconds of stream
    name = f"{stem}_{frame:09d}"
    cv2.imwrite(str(frames_dir / f"{name}.jpg"), image)
    boxes = claimed_boxes(event)
    lines = []
    for claimed in boxes:
        if claimed.label not in labels:
            labels.append(claimed.label)
        lines.append(yolo_line(labels.index(claimed.label), claimed.box))
    (frames_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return FeedbackItem(
        incident_id=int(detail["id"]),
        status=str(detail["status"]),
        type=event.type,
        site_id=event.site_id,
        camera_id=event.camera_id,
        rule_id=event.rule_id,
        event_id=event.event_id,
        pts_s=event.pts_s,
        image=f"obj_train_data/{name}.jpg",
        annotated=annotated,
        boxes=[asdict(b) for b in boxes],
        model=event.model.model_dump() if event.model else None,
        notes=notes,
        clip=clip_name,
    )


def _write_index(out: Path, items: list[FeedbackItem], labels: list[str], incidents: int) -> None:
    (out / "obj.names").write_text("".join(f"{label}\n" for label in labels))
    (out / "obj.data").write_text(
        f"classes = {len(labels)}\ntrain = data/train.txt\nnames = data/obj.names\n"
        "backup = backup/\n"
    )
    (out / "train.txt").write_text("".join(f"data/{item.image}\n" for item in items))
    manifest = {
        "schema": "zhizhi.feedback/1",
        "incidents": incidents,
        "labels": labels,
        "items": [asdict(item) for item in items],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    (out / "README.txt").write_text(README.format(count=len(items), incidents=incidents))
