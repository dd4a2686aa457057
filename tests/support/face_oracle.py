"""An independent face check for the privacy tests: YuNet as libfacedetection builds it (the
`yuface` package, BSD), a different network, training and runtime from the edge's CenterFace.

`faces_in(image)` looks at the picture turned 0, 90, 180 and 270 degrees, each enlarged so its
longer side is about `LOOK_PX` (YuNet finds faces from about 10 pixels; a small evidence frame
is enlarged so that its small faces are not missed by the check itself), and gives every face
it finds at or above `min_score` in frame coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
import yuface

from edge.evidence.faces import View, to_frame
from edge.types import Box
from tests.support.privacy import box_pixels, detail_correlation

Image = npt.NDArray[np.uint8]

FACE_SCORE = 0.75  # found at this score in a source frame: a face (its place is checked)
NEAR_SCORE = 0.3  # where such a face was, the stored picture has nothing scoring this much
ORACLE_SCORE = 0.85  # and nothing anywhere scoring this much with its source's detail kept
DETAIL_KEPT = 0.3  # (in the middle half of the box; a smoothed mosaic keeps about 0)
# YuNet's scores on the shared clips, with these four turns and enlarged as below: their faces
# 0.84-0.91 upright (and turned, or scaled to 12-40 px, in a frame of their own), a face lying
# on the floor seen from the ceiling 0.70-0.78; things that are no faces: a door, a knee, a
# bottle top up to 0.65, the corner of a desk seen from the ceiling up to 0.72 as it is and up
# to 0.83 where a head region over it was blurred into a smooth blob.
LOOK_PX = 960  # the check looks at each picture enlarged to about this longer side (at most x4)
_TURN = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True, slots=True)
class OracleFace:
    box: Box  # normalised to the picture as given
    score: float
    rotation: int  # the turn it was found at


def faces_in(image: Image, min_score: float = 0.3) -> list[OracleFace]:
    """Every face YuNet finds in `image` at any of the four turns, scoring `min_score` or more."""
    h, w = image.shape[:2]
    scale = min(4.0, LOOK_PX / max(h, w))
    found = []
    for rotation in (0, 90, 180, 270):
        turned = image if rotation == 0 else np.asarray(cv2.rotate(image, _TURN[rotation]))
        if scale > 1.0:
            turned = cv2.resize(turned, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        th, tw = turned.shape[:2]
        scores, boxes, _ = yuface.detect(np.ascontiguousarray(turned), conf=min_score)
        view = View((0, 0, w, h), rotation)
        for score, (x, y, bw, bh) in zip(scores, boxes.astype(float), strict=True):
            box = (x / tw, y / th, (x + bw) / tw, (y + bh) / th)
            found.append(OracleFace(to_frame(box, view, (w, h)), float(score) / 100, rotation))
    return found


def best_score(image: Image) -> float:
    """The highest score of any face the check finds in `image` (0 for none)."""
    return max((face.score for face in faces_in(image)), default=0.0)


def best_score_near(found: list[OracleFace], where: Box) -> float:
    """The highest score of the faces `found` whose centre lies in `where` (normalised)."""
    scores = [
        face.score
        for face in found
        if where[0] <= (face.box[0] + face.box[2]) / 2 <= where[2]
        and where[1] <= (face.box[1] + face.box[3]) / 2 <= where[3]
    ]
    return max(scores, default=0.0)


def grown(box: Box, share: float) -> Box:
    """`box` grown by `share` of its size on each side."""
    dx, dy = (box[2] - box[0]) * share, (box[3] - box[1]) * share
    return (box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy)


def detail_kept(source: Image, written: Image, box: Box) -> float:
    """How much of the source's fine detail the written picture still shows in the middle half
    of `box` (about 0.9 for pixels left as they were, through JPEG or H.264; near 0 when
    blurred)."""
    if source.shape != written.shape:
        raise ValueError(f"source {source.shape} and written {written.shape} differ")
    region = np.zeros(source.shape[:2], bool)
    region[box_pixels(box, source.shape, inset=0.25)] = True
    if region.sum() < 16:
        return 1.0  # too small to measure: counted as kept
    return detail_correlation(source, written, region)


def faces_left(
    written: Image, source: Image | None, found: list[OracleFace] | None = None
) -> list[tuple[OracleFace, float]]:
    """The faces the check finds in a written picture at `ORACLE_SCORE` or more where the
    picture still has its source's fine detail (`DETAIL_KEPT`), with that share; with no source
    frame every such face counts."""
    hits = [f for f in (faces_in(written) if found is None else found) if f.score >= ORACLE_SCORE]
    if source is None:
        return [(face, 1.0) for face in hits]
    kept = [(face, detail_kept(source, written, face.box)) for face in hits]
    return [(face, share) for face, share in kept if share >= DETAIL_KEPT]
