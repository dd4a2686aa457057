"""Pure 2D geometry on normalised coordinates: no OpenCV, no numpy, no state."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from edge.types import Box, box_area

Point = tuple[float, float]


def bottom_center(box: Box) -> Point:
    """Where a vehicle or a person touches the ground: the anchor judged against a zone."""
    return ((box[0] + box[2]) / 2.0, box[3])


def box_center(box: Box) -> Point:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def box_diagonal(box: Box) -> float:
    return math.hypot(box[2] - box[0], box[3] - box[1])


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd ray casting. A point exactly on an edge may land on either side.

    >>> point_in_polygon((0.5, 0.5), [(0, 0), (1, 0), (1, 1), (0, 1)])
    True
    """
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y1 > y) != (y2 > y):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < x_cross:
                inside = not inside
    return inside


def polygon_bounds(polygon: Sequence[Point]) -> Box:
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return (min(xs), min(ys), max(xs), max(ys))


def distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def union_box(boxes: Sequence[Box]) -> Box:
    if not boxes:
        raise ValueError("union_box needs at least one box")
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def box_from_crop(box: Box, crop: Box) -> Box:
    """A box normalised to a crop of the frame, normalised to the whole frame again.

    >>> box_from_crop((0.0, 0.0, 1.0, 1.0), (0.2, 0.4, 0.6, 0.8))
    (0.2, 0.4, 0.6, 0.8)
    """
    cw, ch = crop[2] - crop[0], crop[3] - crop[1]
    return (
        crop[0] + box[0] * cw,
        crop[1] + box[1] * ch,
        crop[0] + box[2] * cw,
        crop[1] + box[3] * ch,
    )


def detection_roi(polygons: Sequence[Sequence[Point]], margin: float = 0.15) -> Box | None:
    """The part of the frame worth detecting in: the zones' bounds grown by `margin` of the
    frame on every side (vehicles are seen before they enter). None when that is most of the
    frame anyway, or when there are no zones."""
    if not polygons:
        return None
    bounds = union_box([polygon_bounds(p) for p in polygons])
    roi = (
        max(0.0, bounds[0] - margin),
        max(0.0, bounds[1] - margin),
        min(1.0, bounds[2] + margin),
        min(1.0, bounds[3] + margin),
    )
    area = (roi[2] - roi[0]) * (roi[3] - roi[1])
    return None if area >= 0.6 else roi


def expand_box(box: Box, margin: float) -> Box:
    """Grow a box by `margin` of its own size on every side, clamped to the frame."""
    w, h = box[2] - box[0], box[3] - box[1]
    return (
        max(0.0, box[0] - w * margin),
        max(0.0, box[1] - h * margin),
        min(1.0, box[2] + w * margin),
        min(1.0, box[3] + h * margin),
    )


def boxes_overlap(a: Box, b: Box) -> bool:
    """True when the boxes share any part (touching counts)."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def covered_share(box: Box, by: Sequence[Box]) -> float:
    """The share of `box` that the boxes `by` cover together (where they overlap, once): two
    people side by side on a region cover it where neither alone does.

    >>> covered_share((0.0, 0.0, 1.0, 1.0), [(0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 0.75, 1.0)])
    0.75
    """
    area = box_area(box)
    parts = [
        (max(box[0], b[0]), max(box[1], b[1]), min(box[2], b[2]), min(box[3], b[3])) for b in by
    ]
    parts = [p for p in parts if p[2] > p[0] and p[3] > p[1]]
    if area <= 0 or not parts:
        return 0.0
    xs = sorted({x for p in parts for x in (p[0], p[2])})
    ys = sorted({y for p in parts for y in (p[1], p[3])})
    covered = 0.0
    for x0, x1 in itertools.pairwise(xs):
        for y0, y1 in itertools.pairwise(ys):
            if any(p[0] <= x0 and x1 <= p[2] and p[1] <= y0 and y1 <= p[3] for p in parts):
                covered += (x1 - x0) * (y1 - y0)
    return covered / area


def group_boxes(boxes: Sequence[Box], margin: float) -> list[list[int]]:
    """Indices of the boxes in groups of neighbours: boxes whose grown boxes (`margin` of their
    own size on every side) overlap are in one group, and so are their neighbours' neighbours.

    >>> group_boxes([(0.1, 0.1, 0.2, 0.2), (0.22, 0.1, 0.3, 0.2), (0.8, 0.8, 0.9, 0.9)], 0.25)
    [[0, 1], [2]]
    """
    grown = [expand_box(box, margin) for box in boxes]
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if boxes_overlap(grown[i], grown[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


def row_span(polygon: Sequence[Point], point: Point) -> tuple[float, float] | None:
    """The stretch of the polygon's row through `point` (same y) that holds it, as (x1, x2):
    where the point is inside, the stretch around it; where it lies outside (beside the
    polygon, or above or below it: its row is then moved to the polygon's nearest row), the
    nearest stretch. None for a polygon without area.

    >>> row_span([(0.2, 0.0), (0.8, 0.0), (1.0, 1.0), (0.0, 1.0)], (0.5, 0.5))
    (0.1, 0.9)
    """
    ys = [p[1] for p in polygon]
    top, bottom = min(ys), max(ys)
    if bottom <= top:
        return None
    x, y = point
    # a row exactly on a vertex or on the top and bottom edges is ambiguous: look just inside
    margin = 1e-9 * max(1.0, bottom - top)
    y = min(max(y, top + margin), bottom - margin)
    crossings: list[float] = []
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y1 > y) != (y2 > y):
            crossings.append(x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    crossings.sort()
    spans = list(zip(crossings[::2], crossings[1::2], strict=True))
    if not spans:
        return None
    return min(spans, key=lambda span: max(span[0] - x, x - span[1], 0.0))


def lane_width_px(polygon: Sequence[Point], point: Point, frame_width: float = 1.0) -> float:
    """How wide the lane is in the picture where `point` touches the ground: the polygon's row
    through it (in units of `frame_width`), the lane drawn kerb to kerb by a camera looking
    along it, so that a row crosses the lane at one distance from the camera (perspective
    narrows the far end, and this follows it). 0 for a polygon without area."""
    span = row_span(polygon, point)
    return 0.0 if span is None else (span[1] - span[0]) * frame_width


def width_in_metres(box: Box, polygon: Sequence[Point], lane_width_m: float) -> float | None:
    """How wide an object standing at `box` (normalised) is on the ground, in metres: the share
    of the lane's width its box takes on the row of its foot (bottom centre), times the lane's
    real width. None when the lane has no row there.

    >>> lane = [(0.3, 0.0), (0.7, 0.0), (0.9, 1.0), (0.1, 1.0)]  # 0.6 wide at y = 0.5
    >>> round(width_in_metres((0.44, 0.4, 0.56, 0.5), lane, 4.0), 3)
    0.8
    """
    across = lane_width_px(polygon, bottom_center(box))
    if across <= 0.0:
        return None
    return (box[2] - box[0]) / across * lane_width_m
