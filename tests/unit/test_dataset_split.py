"""Dataset building: clips never on both sides of the split; near-duplicates skipped."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.support.training import synthetic_label_set
from training.dataset import BuildParams, build_dataset, pick_frames, split_by_group
from training.labels import LabelledFrame


@given(
    st.dictionaries(st.text(min_size=1, max_size=6), st.integers(1, 50), min_size=2, max_size=12),
    st.floats(0.05, 0.6),
    st.integers(0, 5),
)
def test_every_group_is_on_one_side_and_both_sides_are_used(
    groups: dict[str, int], fraction: float, seed: int
) -> None:
    sides = split_by_group(groups, fraction, seed)
    assert set(sides) == set(groups)
    assert set(sides.values()) == {"train", "val"}
    assert sides == split_by_group(groups, fraction, seed)  # reproducible


def test_near_duplicates_and_close_frames_are_skipped() -> None:
    frames = [LabelledFrame(index=i) for i in range(4)]
    candidates = [
        (frames[0], 0.0, 0b0),
        (frames[1], 1.0, 0b1),  # 1 bit from frame 0: a repeat
        (frames[2], 1.2, 0xFF),  # new content, 1.2 s after the last kept frame
        (frames[3], 1.4, 0xFFFF00),  # new content, but only 0.2 s after frame 2
    ]
    kept = pick_frames(candidates, BuildParams(every_s=0.5, duplicate_distance=2))
    assert [f.index for f in kept] == [0, 2]


def test_build_writes_ultralytics_layout_split_by_clip(tmp_path: Path) -> None:
    labels = synthetic_label_set(tmp_path / "clips", clips=4, frames=6)
    built = build_dataset([labels], tmp_path / "ds", BuildParams(every_s=0.0, duplicate_distance=0))
    manifest = json.loads(built.manifest.read_text())
    sides_of_clip: dict[str, set[str]] = {}
    for split in ("train", "val"):
        for image in (tmp_path / "ds" / "images" / split).glob("*.jpg"):
            clip = image.name.rsplit("_", 2)[0]
            sides_of_clip.setdefault(clip, set()).add(split)
            assert (tmp_path / "ds" / "labels" / split / f"{image.stem}.txt").is_file()
    assert all(len(sides) == 1 for sides in sides_of_clip.values())
    assert manifest["counts"]["train"]["car"] + manifest["counts"]["val"]["car"] == 24
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert "names" in (tmp_path / "ds" / "data.yaml").read_text()
