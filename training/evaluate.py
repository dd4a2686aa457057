"""`zhizhi models evaluate`: the current and the candidate model side by side, on the dataset's
validation split (mAP via Ultralytics val, plots saved) and on held-out labelled clips (the
event-level report of `zhizhi eval`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.config import SiteConfig
from edge.analysis.detect.onnx import OnnxDetector
from edge.analysis.pipeline import WEAK_DETECTION_SCORE
from edge.offline.evaluation import ClipResult, LabelsFile, match_clip, report
from edge.offline.replay import ReplaySummary, replay_events
from edge.runtime.models import ModelSpec
from training.ultra import yolo

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelUnderTest:
    role: str  # "current" or "candidate"
    spec: ModelSpec
    path: Path


def remap_val_split(data_yaml: Path, model_names: list[str], out: Path) -> tuple[Path, list[str]]:
    """A copy of the val split whose labels use `model_names`' class ids (images linked), for a
    model whose classes differ from the dataset's; dataset classes the model does not have are
    left out (and returned). Returns the new data.yaml and those left-out classes."""
    config = yaml.safe_load(data_yaml.read_text())
    names = config["names"]
    data_names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else names
    if data_names == model_names:
        return data_yaml, []
    root = Path(config["path"])
    images = root / config["val"]
    labels = root / str(config["val"]).replace("images", "labels", 1)
    (out / "images" / "val").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "val").mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(model_names)}
    for image in sorted(images.glob("*.jpg")):
        link = out / "images" / "val" / image.name
        if not link.exists():
            link.symlink_to(image.resolve())
        text = (
            (labels / f"{image.stem}.txt").read_text()
            if (labels / f"{image.stem}.txt").is_file()
            else ""
        )
        lines = []
        for line in text.splitlines():
            parts = line.split()
            name = data_names[int(parts[0])]
            if name in index:
                lines.append(" ".join([str(index[name]), *parts[1:]]))
        (out / "labels" / "val" / f"{image.stem}.txt").write_text("\n".join(lines))
    remapped = out / "data.yaml"
    body = {
        "path": str(out.resolve()),
        "train": "images/val",
        "val": "images/val",
        "names": dict(enumerate(model_names)),
    }
    remapped.write_text(yaml.safe_dump(body, allow_unicode=True))
    return remapped, sorted(set(data_names) - set(model_names))


def detector_metrics(model: ModelUnderTest, data_yaml: Path, out: Path) -> dict[str, Any]:
    """mAP50 and mAP50-95 of the ONNX file on the val split; PR and confusion plots in `out`."""
    detector = OnnxDetector.load(model.spec, path=model.path)
    data, left_out = remap_val_split(data_yaml, list(detector.names), out / "val-data")
    metrics = yolo(model.path).val(
        data=str(data),
        imgsz=model.spec.input_wh[0],
        batch=1,
        device="cpu",
        plots=True,
        project=str(out.resolve()),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    plots = sorted(str(p) for p in (out / "val").glob("*.png"))
    names = metrics.names
    per_class = {
        str(names[int(c)]): {
            "ap50": round(float(metrics.box.ap50[i]), 4),
            "ap50_95": round(float(metrics.box.ap[i]), 4),
        }
        for i, c in enumerate(metrics.box.ap_class_index)
    }
    return {
        "map50": round(float(metrics.box.map50), 4),
        "map50_95": round(float(metrics.box.map), 4),
        "per_class": per_class,
        "classes_left_out": left_out,
        "plots": plots,
    }


def shared_class_map(result: dict[str, Any]) -> dict[str, Any] | None:
    """mAP50 and mAP50-95 of every model over the classes that all of them were measured on
    (a COCO model has no `garbage_bag`: its mAP covers fewer classes, this one compares like
    with like); None without per-class figures."""
    models = result["models"]
    per_class = [m.get("detector", {}).get("per_class") for m in models.values()]
    if not per_class or any(p is None for p in per_class):
        return None
    shared = sorted(set.intersection(*(set(p) for p in per_class)))
    if not shared:
        return None
    figures = {}
    for role, model in models.items():
        values = model["detector"]["per_class"]
        figures[role] = {
            key: round(sum(values[c][key] for c in shared) / len(shared), 4)
            for key in ("ap50", "ap50_95")
        }
    return {"classes": shared, "map": figures}


def event_report(
    model: ModelUnderTest, site: SiteConfig, labels: LabelsFile, clips_dir: Path
) -> dict[str, Any]:
    """The `zhizhi eval` report with every camera's detector being this model."""
    results: list[ClipResult] = []
    detectors: dict[tuple[float, float], OnnxDetector] = {}
    for clip in labels.clips:
        camera = site.camera(clip.camera)
        key = (min(camera.detector.min_score, WEAK_DETECTION_SCORE), camera.detector.iou)
        if key not in detectors:
            detectors[key] = OnnxDetector.load(
                model.spec, key[0], key[1], camera.detector.providers, path=model.path
            )
        events = [
            item
            for item in replay_events(site, camera, clips_dir / clip.file, None, detectors[key])
            if not isinstance(item, ReplaySummary)
        ]
        results.append(match_clip(clip, events))
    return report(results)


def evaluate_models(
    models: list[ModelUnderTest],
    out: Path,
    *,
    data_yaml: Path | None,
    site: SiteConfig | None,
    labels: LabelsFile | None,
    clips_dir: Path | None,
) -> dict[str, Any]:
    """Both reports for every model; written to `out/evaluation.json`."""
    result: dict[str, Any] = {"models": {}}
    for model in models:
        entry: dict[str, Any] = {
            "name": model.spec.name,
            "version": model.spec.version,
            "sha256": model.spec.sha256,
        }
        if data_yaml is not None:
            entry["detector"] = detector_metrics(model, data_yaml, out / model.role)
        if site is not None and labels is not None and clips_dir is not None:
            entry["events"] = event_report(model, site, labels, clips_dir)
        result["models"][model.role] = entry
    shared = shared_class_map(result)
    if shared is not None:
        result["shared_classes"] = shared
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return result


def side_by_side(result: dict[str, Any]) -> list[str]:
    """Table lines: detector metrics, then per event type recall / precision / latency."""
    models = result["models"]
    roles = list(models)
    lines = [
        "metric | "
        + " | ".join(f"{r} ({models[r]['name']} v{models[r]['version']})" for r in roles)
    ]
    for key in ("map50", "map50_95"):
        if all("detector" in models[r] for r in roles):
            lines.append(f"{key} | " + " | ".join(str(models[r]["detector"][key]) for r in roles))
    shared = result.get("shared_classes")
    if shared is not None:
        for key in ("ap50", "ap50_95"):
            row = " | ".join(str(shared["map"][r][key]) for r in roles)
            lines.append(f"{key} over {', '.join(shared['classes'])} | {row}")
    measured = sorted(
        {c for r in roles for c in models[r].get("detector", {}).get("per_class", {})}
    )
    for name in measured:
        per_class = [models[r].get("detector", {}).get("per_class", {}).get(name) for r in roles]
        cells = ["-" if v is None else str(v["ap50"]) for v in per_class]
        lines.append(f"AP50 {name} | " + " | ".join(cells))
    types = sorted({t for r in roles for t in models[r].get("events", {}).get("types", {})})
    for name in types:
        for field in (
            "true_positives",
            "false_alarms",
            "misses",
            "precision",
            "recall",
            "median_latency_s",
        ):
            values = [
                models[r].get("events", {}).get("types", {}).get(name, {}).get(field) for r in roles
            ]
            lines.append(f"{name} {field} | " + " | ".join(str(v) for v in values))
    return lines
