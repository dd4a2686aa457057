"""Synthetic people with COCO keypoints for the person-fall tests: stick figures by construction.

A body is a line of joints from the feet up (ankles, knees, hips, shoulders, head), turned
about the feet by `angle_deg` (0 standing, 90 lying towards +x); `bend_deg` turns the upper
body about the hips only (bending over), `fold` lowers the hips towards the feet (sitting,
crouching). Coordinates are normalised to a square frame (aspect 1).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edge.analysis.detect.yolo import PoseDetection
from edge.rules.person_fall import PersonPose
from edge.types import Box, Detection

Keypoints = npt.NDArray[np.float32]

# joint heights along a standing body, as fractions of its height
ANKLE, KNEE, HIP, SHOULDER, EYE = 0.0, 0.27, 0.5, 0.8, 0.93
HALF_WIDTH = 0.12  # of the height: how far the box reaches beside the body line


def _along(origin: tuple[float, float], angle_deg: float, length: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return origin[0] + length * math.sin(a), origin[1] - length * math.cos(a)


def keypoints(
    feet: tuple[float, float],
    height: float,
    angle_deg: float = 0.0,
    bend_deg: float = 0.0,
    fold: float = 0.0,
    visible: tuple[int, ...] | None = None,
) -> Keypoints:
    """(17, 3) keypoints of a stick figure; joints not in `visible` get visibility 0."""
    leg = HIP * (1.0 - fold)
    knee = _along(feet, angle_deg, KNEE * (1.0 - fold) * height)
    hip = _along(feet, angle_deg, leg * height)
    upper = angle_deg + bend_deg
    shoulder = _along(hip, upper, (SHOULDER - HIP) * height)
    eye = _along(hip, upper, (EYE - HIP) * height)
    nose = _along(hip, upper, (EYE - HIP - 0.02) * height)
    points = [nose, eye, eye, eye, eye, shoulder, shoulder, hip, hip, hip, hip]
    points += [hip, hip, knee, knee, feet, feet]  # 11, 12 hips; 13, 14 knees; 15, 16 ankles
    kp = np.zeros((17, 3), np.float32)
    for index, (x, y) in enumerate(points):
        kp[index] = (x, y, 0.9)
    kp[7:11, 2] = 0.0  # elbows and wrists: not drawn
    if visible is not None:
        for index in range(17):
            if index not in visible:
                kp[index, 2] = 0.0
    return kp


def box_of(kp: Keypoints, height: float, clip: bool = True) -> Box:
    """The box around the drawn joints, grown by the body's width; clipped to the frame."""
    drawn = kp[[0, 5, 11, 13, 15]]
    pad = HALF_WIDTH * height
    x1, y1 = float(drawn[:, 0].min()) - pad, float(drawn[:, 1].min()) - pad / 2
    x2, y2 = float(drawn[:, 0].max()) + pad, float(drawn[:, 1].max()) + pad / 4
    if clip:
        return (max(0.0, x1), max(0.0, y1), min(1.0, x2), min(1.0, y2))
    return (x1, y1, x2, y2)


def person(track_id: int, kp: Keypoints, height: float, score: float = 0.9) -> PersonPose:
    return PersonPose(track_id, box_of(kp, height), score, kp)


def pose_detection(kp: Keypoints, height: float, score: float = 0.9) -> PoseDetection:
    return PoseDetection(Detection("person", 0, score, box_of(kp, height)), kp)
