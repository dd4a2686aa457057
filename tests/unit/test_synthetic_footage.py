"""Footage made from footage for the tests: pasted objects, reframing, ping-pong."""

from __future__ import annotations

import numpy as np
import pytest

from edge.offline.synthetic import paste_object, ping_pong, reframed
from edge.types import Frame


def frame(value: int, pts_s: float, size: tuple[int, int] = (8, 6)) -> Frame:
    w, h = size
    image = np.full((h, w, 3), value, np.uint8)
    return Frame(image, pts_s, round(pts_s * 10), 1.7e9 + pts_s)


def test_ping_pong_plays_back_and_forth_with_steady_pts() -> None:
    clip = [frame(v, v / 10) for v in range(4)]  # 0.0, 0.1, 0.2, 0.3 s
    played = list(ping_pong(clip, 1.0))
    values = [int(f.image[0, 0, 0]) for f in played]
    assert values == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [f.pts_s for f in played] == pytest.approx([i / 10 for i in range(10)])
    assert [f.index for f in played] == list(range(10))


def test_ping_pong_needs_two_frames() -> None:
    with pytest.raises(ValueError, match="two frames"):
        list(ping_pong([frame(0, 0.0)], 1.0))


def test_reframed_cuts_the_middle_to_the_shape_then_scales() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, :100] = 255  # a white band on the left: cut off for 3:2
    (out,) = reframed(iter([Frame(image, 0.0, 0, 0.0)]), (720, 480))
    assert out.image.shape == (480, 720, 3)
    assert int(out.image.max()) == 0


def test_a_pasted_cutout_leaves_the_ground_around_it_and_shades_only_near_it() -> None:
    ground = np.full((100, 100, 3), 200, np.uint8)
    patch = np.zeros((10, 10, 3), np.uint8)
    alpha = np.zeros((10, 10), np.float32)
    alpha[2:8, 2:8] = 1.0  # the object is the middle of its patch
    out = paste_object(ground, patch, (0.4, 0.4, 0.5, 0.5), alpha, shadow=0.4)
    assert int(out[45, 45, 0]) == 0  # the object
    assert int(out[41, 41, 0]) > 150  # its patch's see-through corner shows the ground
    assert int(out[51, 46, 0]) < 200  # shade just below it
    assert int(out[5, 5, 0]) == 200 and int(out[95, 95, 0]) == 200  # far ground untouched
    plain = paste_object(ground, patch, (0.4, 0.4, 0.5, 0.5))
    assert int(plain[41, 41, 0]) == 0  # without an alpha the whole patch is pasted
