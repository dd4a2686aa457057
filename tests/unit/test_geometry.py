"""Pure 2D geometry on normalised coordinates."""

from __future__ import annotations

import math

import pytest

from edge.rules.geometry import (
    Point,
    bottom_center,
    box_center,
    box_diagonal,
    boxes_overlap,
    distance,
    expand_box,
    group_boxes,
    lane_width_px,
    point_in_polygon,
    polygon_bounds,
    row_span,
    union_box,
    width_in_metres,
)
from edge.types import Box

SQUARE: list[Point] = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]
TRAPEZOID: list[Point] = [(0.10, 0.55), (0.45, 0.50), (0.60, 1.0), (0.05, 1.0)]
# A "U" open at the top: the notch (0.4..0.6, 0.0..0.6) is outside.
U_SHAPE: list[Point] = [
    (0.0, 0.0),
    (0.4, 0.0),
    (0.4, 0.6),
    (0.6, 0.6),
    (0.6, 0.0),
    (1.0, 0.0),
    (1.0, 1.0),
    (0.0, 1.0),
]


@pytest.mark.parametrize(
    ("point", "polygon", "inside"),
    [
        ((0.5, 0.5), SQUARE, True),
        ((0.21, 0.79), SQUARE, True),
        ((0.1, 0.5), SQUARE, False),
        ((0.9, 0.5), SQUARE, False),
        ((0.5, 0.1), SQUARE, False),
        ((0.5, 0.9), SQUARE, False),
        ((0.3, 0.8), TRAPEZOID, True),
        ((0.12, 0.6), TRAPEZOID, True),
        ((0.09, 0.6), TRAPEZOID, False),  # just left of the left edge (x = 0.094 there)
        ((0.04, 0.6), TRAPEZOID, False),  # left of the slanted left edge
        ((0.55, 0.6), TRAPEZOID, False),  # right of the slanted right edge
        ((0.3, 0.45), TRAPEZOID, False),  # above the lane
        # concave: the notch is outside, the arms and the base are inside
        ((0.5, 0.3), U_SHAPE, False),
        ((0.5, 0.59), U_SHAPE, False),
        ((0.5, 0.7), U_SHAPE, True),
        ((0.2, 0.3), U_SHAPE, True),
        ((0.8, 0.3), U_SHAPE, True),
        ((1.1, 0.5), U_SHAPE, False),
    ],
)
def test_point_in_polygon(point: Point, polygon: list[Point], inside: bool) -> None:
    assert point_in_polygon(point, polygon) is inside


@pytest.mark.parametrize("polygon", [SQUARE, TRAPEZOID, U_SHAPE])
def test_point_in_polygon_does_not_depend_on_winding(polygon: list[Point]) -> None:
    probes = [(x / 20, y / 20) for x in range(1, 20) for y in range(1, 20)]
    reverse = polygon[::-1]
    assert [point_in_polygon(p, polygon) for p in probes] == [
        point_in_polygon(p, reverse) for p in probes
    ]


@pytest.mark.parametrize(
    ("box", "center", "bottom"),
    [
        ((0.2, 0.4, 0.6, 0.9), (0.4, 0.65), (0.4, 0.9)),
        ((0.0, 0.0, 1.0, 1.0), (0.5, 0.5), (0.5, 1.0)),
        ((0.1, 0.1, 0.1, 0.3), (0.1, 0.2), (0.1, 0.3)),
    ],
)
def test_centres(box: Box, center: Point, bottom: Point) -> None:
    assert box_center(box) == pytest.approx(center)
    assert bottom_center(box) == pytest.approx(bottom)


def test_a_car_whose_box_overlaps_a_zone_but_whose_wheels_are_outside_is_outside() -> None:
    car: Box = (0.3, 0.1, 0.7, 0.5)  # covers most of SQUARE's top, stands above it
    assert point_in_polygon(box_center(car), SQUARE)
    assert not point_in_polygon(bottom_center(car), [(0.2, 0.55), (0.8, 0.55), (0.8, 0.9)])


def test_distances() -> None:
    assert box_diagonal((0.1, 0.1, 0.4, 0.5)) == pytest.approx(0.5)
    assert distance((0.0, 0.0), (0.3, 0.4)) == pytest.approx(0.5)
    assert distance((0.2, 0.2), (0.2, 0.2)) == 0.0


def test_polygon_bounds() -> None:
    assert polygon_bounds(TRAPEZOID) == pytest.approx((0.05, 0.50, 0.60, 1.0))


@pytest.mark.parametrize(
    ("boxes", "union"),
    [
        ([(0.1, 0.2, 0.3, 0.4)], (0.1, 0.2, 0.3, 0.4)),
        ([(0.1, 0.2, 0.3, 0.4), (0.5, 0.0, 0.6, 0.3)], (0.1, 0.0, 0.6, 0.4)),
        ([(0.4, 0.4, 0.5, 0.5), (0.0, 0.6, 0.2, 0.9), (0.3, 0.1, 0.35, 0.2)], (0.0, 0.1, 0.5, 0.9)),
    ],
)
def test_union_box(boxes: list[Box], union: Box) -> None:
    assert union_box(boxes) == pytest.approx(union)


def test_union_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one box"):
        union_box([])


@pytest.mark.parametrize(
    ("box", "margin", "expanded"),
    [
        ((0.4, 0.4, 0.6, 0.6), 0.0, (0.4, 0.4, 0.6, 0.6)),
        ((0.4, 0.4, 0.6, 0.6), 0.5, (0.3, 0.3, 0.7, 0.7)),
        ((0.4, 0.2, 0.6, 0.6), 0.25, (0.35, 0.1, 0.65, 0.7)),
        ((0.0, 0.0, 0.2, 0.2), 1.0, (0.0, 0.0, 0.4, 0.4)),  # clamped at the top-left
        ((0.9, 0.8, 1.0, 1.0), 1.0, (0.8, 0.6, 1.0, 1.0)),  # clamped at the bottom-right
    ],
)
def test_expand_box(box: Box, margin: float, expanded: Box) -> None:
    assert expand_box(box, margin) == pytest.approx(expanded)


def test_expanded_box_contains_the_original() -> None:
    box: Box = (0.33, 0.12, 0.71, 0.94)
    grown = expand_box(box, 0.1)
    assert grown[0] <= box[0] and grown[1] <= box[1]
    assert grown[2] >= box[2] and grown[3] >= box[3]
    assert not math.isclose(grown[0], box[0])


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ((0.1, 0.1, 0.3, 0.3), (0.2, 0.2, 0.4, 0.4), True),
        ((0.1, 0.1, 0.3, 0.3), (0.3, 0.1, 0.5, 0.3), True),  # touching
        ((0.1, 0.1, 0.3, 0.3), (0.31, 0.1, 0.5, 0.3), False),
        ((0.1, 0.1, 0.3, 0.3), (0.1, 0.5, 0.3, 0.7), False),
    ],
)
def test_boxes_overlap(a: Box, b: Box, overlap: bool) -> None:
    assert boxes_overlap(a, b) is overlap
    assert boxes_overlap(b, a) is overlap


def test_neighbouring_boxes_are_grouped_transitively() -> None:
    """A chain of fragments (a bag torn in pieces by the light) is one group even where its
    ends lie far apart; a box further than the margin lets it be."""
    chain: list[Box] = [(0.10, 0.5, 0.14, 0.54), (0.15, 0.5, 0.19, 0.54), (0.20, 0.5, 0.24, 0.54)]
    apart: Box = (0.60, 0.5, 0.64, 0.54)
    assert group_boxes([*chain, apart], 0.25) == [[0, 1, 2], [3]]
    assert group_boxes([chain[0], chain[2]], 0.25) == [[0], [1]]  # a gap of a box's width
    assert group_boxes([chain[0], chain[2]], 1.0) == [[0, 1]]
    assert group_boxes([], 0.5) == []


# The lane's width in the picture, and an object's width in metres -------------------------

# a lane seen along its length: 0.8 of the frame wide at the bottom, 0.2 at the top
PERSPECTIVE_LANE = [(0.4, 0.2), (0.6, 0.2), (0.9, 1.0), (0.1, 1.0)]


@pytest.mark.parametrize(
    ("point", "span"),
    [
        ((0.5, 1.0), (0.1, 0.9)),  # the near end, on the polygon's bottom edge
        ((0.5, 0.6), (0.25, 0.75)),  # halfway: the sides have closed in by half
        ((0.5, 0.2), (0.4, 0.6)),  # the far end
        ((0.5, 1.1), (0.1, 0.9)),  # below the polygon: its nearest row
        ((0.5, 0.1), (0.4, 0.6)),  # above it
        ((0.05, 1.0), (0.1, 0.9)),  # beside it: the row's stretch all the same
    ],
)
def test_row_span_follows_the_perspective(
    point: tuple[float, float], span: tuple[float, float]
) -> None:
    found = row_span(PERSPECTIVE_LANE, point)
    assert found is not None
    assert found == pytest.approx(span)


def test_row_span_of_a_concave_polygon_is_the_stretch_holding_the_point() -> None:
    # a U: two lanes joined at the bottom; a row through the arms crosses both
    u_shape = [
        (0.1, 0.1),
        (0.3, 0.1),
        (0.3, 0.6),
        (0.7, 0.6),
        (0.7, 0.1),
        (0.9, 0.1),
        (0.9, 0.9),
        (0.1, 0.9),
    ]
    assert row_span(u_shape, (0.2, 0.3)) == pytest.approx((0.1, 0.3))
    assert row_span(u_shape, (0.8, 0.3)) == pytest.approx((0.7, 0.9))
    assert row_span(u_shape, (0.5, 0.3)) in [pytest.approx((0.1, 0.3)), pytest.approx((0.7, 0.9))]
    assert row_span(u_shape, (0.5, 0.8)) == pytest.approx((0.1, 0.9))


def test_row_span_of_a_flat_polygon_is_none() -> None:
    assert row_span([(0.1, 0.5), (0.9, 0.5), (0.5, 0.5)], (0.5, 0.5)) is None
    assert lane_width_px([(0.1, 0.5), (0.9, 0.5), (0.5, 0.5)], (0.5, 0.5), 1280) == 0.0


def test_lane_width_px_is_the_row_in_pixels() -> None:
    assert lane_width_px(PERSPECTIVE_LANE, (0.5, 0.6), 1280) == pytest.approx(0.5 * 1280)


@pytest.mark.parametrize(
    ("box", "metres"),
    [
        # the same 0.4 m bag near and far: it takes the same share of the lane's width
        ((0.46, 0.9, 0.54, 1.0), 0.4),  # row at y=1.0: 0.8 wide, the bag 0.08
        ((0.49, 0.15, 0.51, 0.2), 0.4),  # row at y=0.2: 0.2 wide, the bag 0.02
        ((0.45, 0.5, 0.55, 0.6), 0.8),  # row at y=0.6: 0.5 wide, the box 0.1
        ((0.1, 0.8, 0.9, 1.0), 4.0),  # across the whole lane
    ],
)
def test_width_in_metres_is_the_share_of_the_lane_at_the_foot(box: Box, metres: float) -> None:
    assert width_in_metres(box, PERSPECTIVE_LANE, 4.0) == pytest.approx(metres)


def test_width_in_metres_scales_with_the_lane_width() -> None:
    box = (0.46, 0.9, 0.54, 1.0)
    assert width_in_metres(box, PERSPECTIVE_LANE, 6.0) == pytest.approx(0.6)


def test_width_in_metres_of_a_flat_lane_is_none() -> None:
    assert width_in_metres((0.4, 0.4, 0.5, 0.5), [(0.1, 0.5), (0.9, 0.5), (0.5, 0.5)], 4) is None
