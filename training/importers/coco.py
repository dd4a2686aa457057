"""COCO object detection JSON (images, annotations with `[x, y, w, h]` boxes, categories)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from training.importers.base import (
    DEFAULT_CLIP_PATTERN,
    ClassMapping,
    ImportResult,
    PixelBox,
    convert_frame,
    image_size,
    source_for_image,
)
from training.labels import Problem


class CocoImage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    file_name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class CocoAnnotation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]


class CocoCategory(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    name: str


class CocoFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    images: list[CocoImage]
    annotations: list[CocoAnnotation] = Field(default_factory=list)
    categories: list[CocoCategory]


def import_coco(
    json_path: Path,
    mapping: ClassMapping,
    images_dir: Path | None = None,
    clip_pattern: str = DEFAULT_CLIP_PATTERN,
) -> ImportResult:
    """Read a COCO file; image `file_name`s are relative to `images_dir` (default: beside it)."""
    result = ImportResult(classes=list(mapping.classes))
    file = str(json_path)
    try:
        coco = CocoFile.model_validate_json(json_path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as error:
        result.problems.append(
            Problem(file, None, f"not a COCO file: {str(error).splitlines()[0]}")
        )
        return result
    folder = images_dir or json_path.parent
    categories = {c.id: c.name for c in coco.categories}
    images = {image.id: image for image in coco.images}
    per_image: dict[int, list[PixelBox]] = defaultdict(list)
    for ann in coco.annotations:
        if ann.image_id not in images:
            result.problems.append(
                Problem(file, None, f"annotation {ann.id}: unknown image id {ann.image_id}")
            )
            continue
        name = categories.get(ann.category_id)
        if name is None:
            where = f"{file}: image {images[ann.image_id].file_name}"
            result.problems.append(
                Problem(where, None, f"annotation {ann.id}: unknown category id {ann.category_id}")
            )
            continue
        x, y, w, h = ann.bbox
        per_image[ann.image_id].append(PixelBox(name, x, y, x + w, y + h))
    for image in coco.images:
        path = folder / image.file_name
        size = image_size(path)
        if size is None:
            result.problems.append(Problem(str(path), None, "missing or unreadable image"))
            continue
        if size != (image.width, image.height):
            result.problems.append(
                Problem(
                    str(path),
                    None,
                    f"is {size[0]}x{size[1]}, the JSON says {image.width}x{image.height}",
                )
            )
            continue
        where = f"{file}: {image.file_name}"
        frame = convert_frame(where, 0, per_image[image.id], size, mapping, result.problems)
        result.sources.append(source_for_image(path, size, frame, clip_pattern))
    return result
