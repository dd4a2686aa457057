"""Label importers: CVAT for video 1.1 XML, CVAT's YOLO export, Ultralytics YOLO folders and
COCO JSON, each mapped onto the project's classes and checked (`zhizhi data import`)."""

from __future__ import annotations

from training.importers.base import ClassMapping, ImportResult, load_mapping
from training.importers.coco import import_coco
from training.importers.cvat import import_cvat_video
from training.importers.yolo import import_cvat_yolo, import_yolo_folder

FORMATS = ("cvat-video", "cvat-yolo", "yolo", "coco")

__all__ = [
    "FORMATS",
    "ClassMapping",
    "ImportResult",
    "import_coco",
    "import_cvat_video",
    "import_cvat_yolo",
    "import_yolo_folder",
    "load_mapping",
]
