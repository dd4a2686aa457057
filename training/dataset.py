"""Dataset builder (`zhizhi data build`): label sets in, an Ultralytics dataset out.

Frames are sampled from each source at least `every_s` apart, and a frame whose perceptual
hash is within `duplicate_distance` bits of the last kept frame of its source is skipped (a
parked car filmed for ten minutes is one sample, not six hundred). Train and validation are
split by group (one clip, or the frames extracted from one clip): frames of one clip never
land on both sides. The output is the layout Ultralytics trains on, with a manifest:

    OUT/images/{train,val}/*.jpg  OUT/labels/{train,val}/*.txt  OUT/data.yaml  OUT/manifest.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field

from training.labels import LabelledFrame, LabelSet, Source

logger = logging.getLogger(__name__)

Split = Literal["train", "val"]
Image = npt.NDArray[np.uint8]


class BuildParams(BaseModel):
    """How frames are sampled and split; recorded in the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="Share of frames in val")
    seed: int = 0
    every_s: float = Field(default=0.5, ge=0.0, description="Kept frames at least this far apart")
    duplicate_distance: int = Field(
        default=4, ge=0, description="Hamming distance of perceptual hashes counted as a repeat"
    )
    max_frames_per_source: int = Field(default=500, gt=0)
    val_groups: list[str] = Field(
        default_factory=list,
        description="Groups held out as the val split (every other group trains); when "
        "empty, whole groups are drawn at random to about `val_fraction`",
    )
    jpeg_quality: int = Field(default=95, ge=50, le=100)


def split_by_group(
    frames_per_group: Mapping[str, int], val_fraction: float, seed: int
) -> dict[str, Split]:
    """Assign whole groups to train or val, about `val_fraction` of the frames to val.

    Deterministic for a seed. With two or more groups and a non-zero fraction, both sides get
    at least one group.
    """
    groups = sorted(frames_per_group)
    random.Random(seed).shuffle(groups)  # noqa: S311 - a reproducible split, not a secret
    total = sum(frames_per_group.values())
    sides: dict[str, Split] = dict.fromkeys(groups, "train")
    if val_fraction <= 0 or len(groups) < 2:
        return sides
    in_val = 0
    for group in groups[:-1]:  # the last group always trains
        if in_val and in_val + frames_per_group[group] / 2 > val_fraction * total:
            break
        sides[group] = "val"
        in_val += frames_per_group[group]
    return sides


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def perceptual_hash(image_bgr: Image) -> int:
    """64-bit pHash of a frame (imagehash), as an int."""
    import imagehash
    from PIL import Image as PilImage

    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    return int(str(imagehash.phash(PilImage.fromarray(rgb))), 16)


def pick_frames(
    candidates: list[tuple[LabelledFrame, float, int]], params: BuildParams
) -> list[LabelledFrame]:
    """From (frame, time s, hash) in time order: at least `every_s` apart, near-repeats of the
    last kept frame skipped, at most `max_frames_per_source`. Pure."""
    kept: list[LabelledFrame] = []
    last_time = float("-inf")
    last_hash: int | None = None
    for frame, time_s, phash in candidates:
        if time_s - last_time < params.every_s:
            continue
        if last_hash is not None and hamming(phash, last_hash) <= params.duplicate_distance:
            continue
        kept.append(frame)
        last_time, last_hash = time_s, phash
        if len(kept) >= params.max_frames_per_source:
            break
    return kept


@dataclass(frozen=True, slots=True)
class Sample:
    source: Source
    frame: LabelledFrame
    image: Image


def iter_source_frames(source: Source) -> Iterator[tuple[LabelledFrame, float, Image]]:
    """Each labelled frame of a source with its time (s) and pixels, in order."""
    if source.kind == "image":
        image = cv2.imread(source.path, cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {source.path}")
        yield source.frames[0], 0.0, image.astype(np.uint8)
        return
    wanted = {frame.index: frame for frame in source.frames}
    capture = cv2.VideoCapture(source.path)
    if not capture.isOpened():
        raise OSError(f"cannot open video {source.path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    try:
        index = 0
        last = max(wanted) if wanted else -1
        while index <= last:
            ok, image = capture.read()
            if not ok:
                break
            if index in wanted:
                yield wanted[index], index / fps, image.astype(np.uint8)
            index += 1
    finally:
        capture.release()


def _sample_source(source: Source, params: BuildParams) -> list[Sample]:
    images: dict[int, Image] = {}
    candidates = []
    for frame, time_s, image in iter_source_frames(source):
        candidates.append((frame, time_s, perceptual_hash(image)))
        images[frame.index] = image
    chosen = pick_frames(candidates, params)
    return [Sample(source, frame, images[frame.index]) for frame in chosen]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def yolo_lines(frame: LabelledFrame) -> str:
    """The frame's boxes as Ultralytics label lines `cls cx cy w h`, normalised."""
    lines = []
    for box in frame.boxes:
        cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        lines.append(f"{box.cls} {cx:.6f} {cy:.6f} {box.x2 - box.x1:.6f} {box.y2 - box.y1:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


@dataclass(frozen=True, slots=True)
class BuiltDataset:
    root: Path
    data_yaml: Path
    manifest: Path
    manifest_sha256: str
    counts: dict[str, dict[str, int]]


def build_dataset(labels: list[LabelSet], out: Path, params: BuildParams) -> BuiltDataset:
    """Sample, split by group and write the dataset; returns where and what was written.

    Raises:
        ValueError: the label sets disagree on the class list, or nothing was sampled.
        OSError: a source cannot be read.
    """
    classes = labels[0].classes
    for other in labels[1:]:
        if other.classes != classes:
            raise ValueError(f"label sets have different classes: {classes} vs {other.classes}")
    sources = [source for label_set in labels for source in label_set.sources]
    samples = [sample for source in sources for sample in _sample_source(source, params)]
    if not samples:
        raise ValueError("no frame was sampled: the label sets have no labelled frames")
    per_group: dict[str, int] = {}
    for sample in samples:
        per_group[sample.source.group] = per_group.get(sample.source.group, 0) + 1
    if params.val_groups:
        unknown = sorted(set(params.val_groups) - set(per_group))
        if unknown:
            raise ValueError(
                f"val groups {unknown} have no sampled frame; groups: {sorted(per_group)}"
            )
        sides: dict[str, Split] = {
            g: "val" if g in params.val_groups else "train" for g in per_group
        }
    else:
        sides = split_by_group(per_group, params.val_fraction, params.seed)
    counts: dict[str, dict[str, int]] = {
        split: {"images": 0, "background": 0, **dict.fromkeys(classes, 0)}
        for split in ("train", "val")
    }
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for number, sample in enumerate(samples):
        split = sides[sample.source.group]
        stem = f"{_safe(sample.source.group)}_{number:06d}_f{sample.frame.index:06d}"
        quality = [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]
        cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), sample.image, quality)
        (out / "labels" / split / f"{stem}.txt").write_text(yolo_lines(sample.frame))
        counts[split]["images"] += 1
        counts[split]["background"] += not sample.frame.boxes
        for box in sample.frame.boxes:
            counts[split][classes[box.cls]] += 1
    data_yaml = out / "data.yaml"
    data_yaml.write_text(
        yaml.safe_dump(
            {
                "path": str(out.resolve()),
                "train": "images/train",
                "val": "images/val" if counts["val"]["images"] else "images/train",
                "names": dict(enumerate(classes)),
            },
            allow_unicode=True,
            sort_keys=False,
        )
    )
    manifest = {
        "schema": "zhizhi.dataset/1",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": params.model_dump(),
        "classes": classes,
        "sources": [
            {
                "path": source.path,
                "sha256": file_sha256(Path(source.path)),
                "group": source.group,
                "split": sides.get(source.group, "unused"),
                "frames": sum(1 for s in samples if s.source is source),
            }
            for source in sources
        ],
        "groups": {group: sides[group] for group in sorted(sides)},
        "counts": counts,
    }
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    logger.info("dataset %s: %s", out, counts)
    return BuiltDataset(out, data_yaml, manifest_path, file_sha256(manifest_path), counts)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)
