"""From labelled clips to a registered ONNX model replayed by the edge, on a tiny synthetic
dataset: build, one epoch at imgsz 64 on the CPU, export, verify, register, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import SiteConfig
from edge.detect.onnx import OnnxDetector
from edge.models import load_registry, resolve_model_path, verify_model_file
from edge.replay import ReplaySummary, replay_events
from tests.support.training import synthetic_label_set
from training.dataset import BuildParams, build_dataset

pytestmark = pytest.mark.integration


def test_train_export_register_and_replay(models_dir: Path, tmp_path: Path) -> None:
    labels = synthetic_label_set(tmp_path / "clips", clips=3, frames=12)
    params = BuildParams(val_fraction=0.34, every_s=0.0, duplicate_distance=0, seed=1)
    built = build_dataset([labels], tmp_path / "dataset", params)
    assert built.counts["train"]["images"] > 0 and built.counts["val"]["images"] > 0

    from training.export import export_and_register
    from training.train import TrainParams, train

    result = train(
        TrainParams(
            data=built.data_yaml,
            base=models_dir / "yolov8n.pt",
            epochs=1,
            imgsz=64,
            batch=4,
            device="cpu",
            workers=0,
            runs_dir=tmp_path / "runs",
            name="smoke",
        )
    )
    assert result.best.is_file()
    run = json.loads((result.run_dir / "zhizhi-run.json").read_text())
    assert run["dataset_manifest_sha256"] == built.manifest_sha256

    registry = tmp_path / "candidates.yaml"
    exported = export_and_register(
        result.run_dir, "smoke-64", "1", tmp_path / "models", registry, int8="auto"
    )
    spec = load_registry(registry)["smoke-64"]
    assert spec.input_wh == (64, 64)
    assert spec.dataset_sha256 == built.manifest_sha256
    assert spec.trained_from == "yolov8n.pt"
    assert any(line.startswith("int8: speed") for line in exported.lines)
    path = resolve_model_path(spec, [tmp_path / "models"])
    verify_model_file(spec, path)
    detector = OnnxDetector.load(spec, path=path)
    assert list(detector.names) == ["car", "garbage_bag"]

    site = SiteConfig.model_validate(
        {
            "site": {"id": "smoke"},
            "cameras": [
                {
                    "id": "cam",
                    "source": labels.sources[0].path,
                    "zones": [{"id": "lane", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                    "rules": [
                        {"id": "lane-blocked", "type": "fire_lane", "zone": "lane", "dwell_s": 1}
                    ],
                }
            ],
        }
    )
    items = list(replay_events(site, site.cameras[0], Path(labels.sources[0].path), None, detector))
    summary = items[-1]
    assert isinstance(summary, ReplaySummary)
    assert summary.frames == 12
    assert summary.detector_runs > 0
