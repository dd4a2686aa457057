"""Fetch the registered COCO models and record their sha256 in models/registry.yaml.

Needs internet (or local `.pt` files, see `--weights-dir`) and the training extra:

    pip install -e '.[edge,training]'      # ultralytics (brings torch), onnx, onnxslim
    python models/fetch_models.py           # all four models into ~/.cache/zhizhi/models
    python models/fetch_models.py yolov8n-320 --out-dir models/weights
    python models/fetch_models.py --weights-dir ../shared/models yolov8n-640   # no download

The Ultralytics models are exported from the official weights (`YOLO("yolov8n.pt")` downloads
them from the Ultralytics GitHub release) to ONNX with a static 1x3xSxS input, opset 17,
simplified, no NMS inside. YOLOX-Nano is downloaded as published by Megvii. An export is not
byte-identical to another export made with other library versions, so each new file's sha256
replaces the registered one; the edge then refuses any other file under that name.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from edge.runtime.models import (
    ModelSpec,
    default_registry_path,
    file_sha256,
    load_registry,
    register_model,
)

logger = logging.getLogger("fetch_models")

OPSET = 17
ULTRALYTICS_EXPORTS: dict[str, tuple[str, int]] = {
    "yolov8n-640": ("yolov8n.pt", 640),
    "yolov8n-320": ("yolov8n.pt", 320),
    "yolov8n-pose-640": ("yolov8n-pose.pt", 640),
}
DOWNLOADS: dict[str, str] = {
    "yolox-nano-416": (
        "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"
    ),
}
DOWNLOAD_TIMEOUT_S = 60


def export_ultralytics(
    weights: str, imgsz: int, target: Path, work_dir: Path, weights_dir: Path | None
) -> None:
    """Export Ultralytics `weights` to ONNX at `imgsz` and move the file to `target`.

    With `weights_dir`, the `.pt` file is taken from there and nothing is downloaded.
    """
    local = (weights_dir / weights).resolve() if weights_dir is not None else None
    if local is not None and not local.is_file():
        raise FileNotFoundError(f"{local} does not exist (from --weights-dir)")
    # Before ultralytics is imported: it reads these once. Never pip-install on the fly;
    # allow the weights download unless local weights were given.
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work_dir / "ultralytics-config"))
    if local is not None:
        os.environ["YOLO_OFFLINE"] = "1"
    else:
        os.environ.pop("YOLO_OFFLINE", None)
    from ultralytics import YOLO  # type: ignore[import-not-found, unused-ignore]

    if local is not None:  # a copy, so the export is written here and not beside the original
        shutil.copyfile(local, work_dir / weights)
    with contextlib.chdir(work_dir):  # a bare asset name is downloaded into the current folder
        model = YOLO(weights)
        exported = model.export(
            format="onnx", imgsz=imgsz, opset=OPSET, simplify=True, dynamic=False, batch=1
        )
        exported_path = Path(str(exported)).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(exported_path, target)


def download(url: str, target: Path) -> None:
    """Download `url` (https only) to `target`, replacing it only once complete."""
    if not url.startswith("https://"):
        raise ValueError(f"refusing to download from a non-https URL: {url}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,  # noqa: S310
        partial.open("wb") as handle,
    ):
        shutil.copyfileobj(response, handle)
    partial.replace(target)


def fetch(spec: ModelSpec, out_dir: Path, work_dir: Path, weights_dir: Path | None) -> ModelSpec:
    """Produce the file of `spec` in `out_dir`; the spec with the file's sha256."""
    target = out_dir / spec.file
    if spec.name in ULTRALYTICS_EXPORTS:
        weights, imgsz = ULTRALYTICS_EXPORTS[spec.name]
        if (imgsz, imgsz) != spec.input_wh:
            raise ValueError(f"{spec.name}: registry input {spec.input_wh} is not {imgsz}")
        export_ultralytics(weights, imgsz, target, work_dir, weights_dir)
    elif spec.name in DOWNLOADS:
        download(DOWNLOADS[spec.name], target)
    else:
        raise ValueError(f"{spec.name}: no download or export recipe; train and register it")
    sha256 = file_sha256(target)
    logger.info("%s: wrote %s (sha256 %s)", spec.name, target, sha256)
    return ModelSpec.model_validate({**spec.model_dump(), "sha256": sha256})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", help="registry names (default: all with a recipe)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path.home() / ".cache" / "zhizhi" / "models",
        help="where the ONNX files go (default: ~/.cache/zhizhi/models, searched by the edge)",
    )
    parser.add_argument("--registry", type=Path, default=None, help="registry.yaml to update")
    parser.add_argument(
        "--weights-dir", type=Path, default=None, help="take yolov8n.pt etc. from here"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    registry_path = args.registry or default_registry_path()
    registry = load_registry(registry_path)
    names = args.names or [*ULTRALYTICS_EXPORTS, *DOWNLOADS]
    with tempfile.TemporaryDirectory(prefix="zhizhi-fetch-") as work:
        for name in names:
            fetched = fetch(registry[name], args.out_dir.resolve(), Path(work), args.weights_dir)
            register_model(fetched, registry_path)
    logger.info("Done. Point the edge at the files with ZHIZHI_MODEL_DIR=%s", args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
