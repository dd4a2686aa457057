"""The whole falling-object rule on synthetic frames seen looking up the facade: the facade
scene's frames warped as a camera tilted 65° further up would see them (a rotation of a
pinhole camera is the homography K·R·K⁻¹ of its picture), so the object is 3 px where it
is let go, grows as it comes down and speeds up beyond gravity in the picture; the speck
finder, the linker and the judge must still find it, and the distractors still raise
nothing (but the swinging leaves: see LEAVES_SWING)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import pytest

from common.config import FallingObjectRuleConfig, ZoneConfig
from edge.analysis.frame_rules import FacadeWatch
from edge.offline.falling_synthetic import FacadeScene, frames
from edge.rules.base import RuleOutput
from edge.types import Frame

SCENE = FacadeScene(object_px=5.0, release_floor=11)  # 480x720; let go at 1.5 s
QUIET = replace(SCENE, release_s=None)
WHOLE = [(0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98)]
TILT_DEG = 65.0
SIZE_AT_RELEASE = 0.6  # 5 px -> 3 px


def tilted(scene: FacadeScene) -> np.ndarray[Any, Any]:
    """The homography of the camera tilted up by TILT_DEG (focal length: 60° across the
    picture's height), scaled so the release point keeps SIZE_AT_RELEASE of its size, and
    moved to the picture's centre column, 10 % from the top."""
    w, h = scene.width, scene.height
    f = (h / 2) / math.tan(math.radians(30))
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    a = math.radians(TILT_DEG)
    rotation = np.array([[1, 0, 0], [0, math.cos(a), math.sin(a)], [0, -math.sin(a), math.cos(a)]])
    tilt = k @ rotation @ np.linalg.inv(k)
    x, y = scene.release_xy
    pts = np.array([[[x, y], [x + 1, y], [x, y + 1]]], np.float64)
    p0, px, py = cv2.perspectiveTransform(pts, tilt)[0]
    scale = SIZE_AT_RELEASE / math.sqrt(abs(float(np.cross(px - p0, py - p0))))
    shift = (w / 2 - scale * p0[0], 0.1 * h - scale * p0[1])
    placed = np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1.0]])
    homography: np.ndarray[Any, Any] = placed @ tilt
    return homography


def looking_up(scene: FacadeScene) -> Iterator[Frame]:
    m = tilted(scene)
    for frame in frames(scene):
        image = cv2.warpPerspective(
            frame.image, m, (scene.width, scene.height), flags=cv2.INTER_AREA,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        yield replace(frame, image=np.ascontiguousarray(image))


def run(scene: FacadeScene) -> list[RuleOutput]:
    zone = ZoneConfig(id="facade", polygon=WHOLE)
    config = FallingObjectRuleConfig.model_validate(
        {"id": "throw", "zone": "facade", "type": "falling_object"}
    )
    rule = FacadeWatch(config, zone)
    return [out for frame in looking_up(scene) for out in rule.on_frame(frame)]


def size_ratio(scene: FacadeScene, m: np.ndarray[Any, Any], t: float) -> float:
    where = scene.object_at(t)
    assert where is not None
    x, y = where
    p0, px, py = cv2.perspectiveTransform(np.array([[[x, y], [x + 1, y], [x, y + 1]]]), m)[0]
    return math.sqrt(abs(float(np.cross(px - p0, py - p0))))


def test_the_view_makes_the_object_3_px_at_the_top_and_grow() -> None:
    m = tilted(SCENE)
    landing = SCENE.landing_s
    assert landing is not None
    release = SCENE.release_s or 0.0
    top = SCENE.object_px * size_ratio(SCENE, m, release)
    low = SCENE.object_px * size_ratio(SCENE, m, release + 0.9 * (landing - release))
    assert top == pytest.approx(3.0, abs=0.1) and low > 4 * top


def test_a_fall_seen_looking_up_is_found_with_its_onset() -> None:
    """(The parabola alone finds nothing here: every track of the object is 13-18 px off
    it.)"""
    outputs = run(SCENE)
    assert [o.state for o in outputs] == ["new", "end"]
    assert outputs[0].onset_s == pytest.approx(SCENE.release_s, abs=0.3)


LEAVES_SWING = pytest.mark.xfail(
    strict=True,
    reason="known limit: in this steep view a swinging leaf's track, cut at its start, passes "
    "the parabola (the judge before the perspective raised the same alert at 3.98 s); the "
    "perspective lets nothing more in",
)


@pytest.mark.parametrize(
    "distractor",
    [
        {"bird": True},
        pytest.param({"leaves": True}, marks=LEAVES_SWING),
        {"insect": True},
        {"rain": True},
    ],
    ids=["bird", "leaves", "insect-at-the-lens", "rain"],
)
def test_what_is_not_a_fall_raises_no_alert_looking_up(distractor: dict[str, object]) -> None:
    assert run(replace(QUIET, **distractor)) == []  # type: ignore[arg-type]
