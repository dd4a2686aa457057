"""The feedback loop: false alarms exported from the server as a labelling task that CVAT and
`zhizhi data import cvat-yolo` read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi.testclient import TestClient

from edge.evidence.clips import encode_mp4
from edge.evidence.store import encode_jpeg
from training.feedback import claimed_boxes, export_feedback, yolo_line
from training.importers import ClassMapping, import_cvat_yolo

Headers = Callable[[str], dict[str, str]]
CAR_BOX = [0.2, 0.5, 0.5, 0.9]


def upload(client: TestClient, auth: Headers, data: bytes, content_type: str) -> str:
    sha = hashlib.sha256(data).hexdigest()
    response = client.put(
        f"/api/v1/evidence/{sha}",
        content=data,
        headers={**auth("edge"), "Content-Type": content_type},
    )
    assert response.status_code in (200, 201), response.text
    return sha


def grey(level: int) -> np.ndarray:
    return np.full((96, 128, 3), level, np.uint8)


def post(client: TestClient, auth: Headers, message: dict[str, Any]) -> int:
    response = client.post("/api/v1/events", json=message, headers=auth("edge"))
    assert response.status_code in (200, 201), response.text
    page = client.get(
        "/api/v1/incidents",
        params={"camera_id": message["camera_id"]},
        headers=auth("viewer"),
    ).json()
    return int(page["items"][0]["id"])


def test_false_alarms_become_a_labelling_task_that_imports_back(
    client: TestClient, auth: Headers, make_message: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    # a clip from 10.0 s at 10 fps, each frame a different grey: the alert frame (11.0 s) is 60
    clip = encode_mp4([(10.0 + i / 10, grey(50 + i)) for i in range(21)])
    clip_sha = upload(client, auth, clip, "video/mp4")
    snap_sha = upload(client, auth, encode_jpeg(grey(200)), "image/jpeg")
    evidence = [
        {"kind": "snapshot", "sha256": snap_sha, "content_type": "image/jpeg", "url": "s.jpg"},
        {
            "kind": "clip",
            "sha256": clip_sha,
            "content_type": "video/mp4",
            "url": "c.mp4",
            "start_pts_s": 10.0,
        },
    ]
    blockers = [{"kind": "vehicle", "label": "car", "bbox": CAR_BOX, "score": 0.7}]
    lane = post(
        client,
        auth,
        make_message(
            event_id="lane-1",
            camera_id="gate-east",
            pts_s=11.0,
            details={"blockers": blockers},
            evidence=evidence,
        ),
    )
    snap_only = [evidence[0]]
    fall = post(
        client,
        auth,
        make_message(
            event_id="fall-1",
            camera_id="lobby",
            type="person_fall",
            rule_id="lobby-fall",
            bbox=[0.3, 0.6, 0.7, 0.95],
            evidence=snap_only,
        ),
    )
    post(client, auth, make_message(event_id="open-1", camera_id="car-park"))  # stays open
    for incident, note in ((lane, "a shadow, not a car"), (fall, "someone sitting down")):
        response = client.post(
            f"/api/v1/incidents/{incident}/false-alarm",
            json={"note": note},
            headers=auth("operator"),
        )
        assert response.status_code == 200, response.text

    client.headers.update(auth("viewer"))
    out = tmp_path / "task"
    summary = export_feedback(client, out)

    assert (summary.incidents, summary.frames, summary.skipped) == (2, 2, [])
    assert sorted(summary.labels) == ["car", "person"]
    manifest = json.loads((out / "manifest.json").read_text())
    by_type = {item["type"]: item for item in manifest["items"]}
    lane_item, fall_item = by_type["fire_lane"], by_type["person_fall"]
    assert lane_item["notes"] == ["a shadow, not a car"] and lane_item["status"] == "false_alarm"
    assert lane_item["annotated"] is False and lane_item["clip"].endswith(".mp4")
    assert fall_item["annotated"] is True and fall_item["clip"] is None  # from the snapshot
    # the lane's frame is the clip frame at the alert (grey 60), not the drawn snapshot
    image = cv2.imread(str(out / lane_item["image"]))
    assert image is not None and abs(int(image.mean()) - 60) <= 3
    label_file = (out / lane_item["image"]).with_suffix(".txt")
    car = summary.labels.index("car")
    assert label_file.read_text().split("\n")[0] == yolo_line(car, (0.2, 0.5, 0.5, 0.9))
    assert (out / "obj.names").read_text().split() == summary.labels

    # corrected in CVAT and exported as YOLO 1.1 with images, it imports back
    result = import_cvat_yolo(out, ClassMapping(classes=["person", "car"]))
    assert result.problems == []
    boxes = {
        (box.cls, round(box.x1, 3))
        for source in result.sources
        for f in source.frames
        for box in f.boxes
    }
    assert boxes == {(1, 0.2), (0, 0.3)}


def test_claimed_boxes_fall_back_to_the_event_box_and_type(
    make_message: Callable[..., dict[str, Any]],
) -> None:
    from common.events import Event

    pile = Event.model_validate(
        make_message(
            type="garbage_pile",
            details={"contents": [{"kind": "bag", "label": "garbage_bag", "bbox": CAR_BOX}]},
        )
    )
    assert [c.label for c in claimed_boxes(pile)] == ["garbage_bag"]
    throw = Event.model_validate(make_message(type="falling_object", details={}))
    (claimed,) = claimed_boxes(throw)
    assert claimed.label == "falling_object" and claimed.box == (0.1, 0.5, 0.4, 0.9)
