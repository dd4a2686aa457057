"""Evidence clips: H.264 MP4 from kept frames, at their own timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from edge.evidence.clips import ClipError, encode_mp4, probe_mp4


def frame(value: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    image = np.full((size[1], size[0], 3), value, np.uint8)
    image[: size[1] // 2, : size[0] // 2] = 255 - value  # something to encode
    return image


def test_a_clip_is_h264_with_the_frames_at_their_own_times() -> None:
    # one frame a second while quiet, then five a second: variable frame rate is kept
    times = [10.0, 11.0, 12.0, 12.2, 12.4, 12.6, 12.8]
    data = encode_mp4([(t, frame(20 * i)) for i, t in enumerate(times)])
    count, duration, size, codec = probe_mp4(data)
    assert (count, codec, size) == (len(times), "h264", (64, 48))
    assert duration == pytest.approx(times[-1] - times[0], abs=0.01)
    assert data[4:8] == b"ftyp"


def test_odd_sizes_are_made_even_for_yuv420() -> None:
    _, _, size, _ = probe_mp4(encode_mp4([(0.0, frame(50, (65, 49))), (0.1, frame(60, (65, 49)))]))
    assert size == (64, 48)


def test_one_frame_still_makes_a_clip_and_none_is_an_error() -> None:
    count, duration, _, _ = probe_mp4(encode_mp4([(3.0, frame(90))]))
    assert (count, duration) == (1, 0.0)
    with pytest.raises(ClipError, match="no frames"):
        encode_mp4([])


def test_repeated_timestamps_still_encode_in_order() -> None:
    count, _, _, _ = probe_mp4(encode_mp4([(1.0, frame(10)), (1.0, frame(20)), (1.0, frame(30))]))
    assert count == 3
