"""From labelled clips to a promoted model, on a tiny synthetic dataset: build; train two epochs
at imgsz 64 on the CPU, interrupted after the first and resumed with `zhizhi train --resume`;
export, verify, register into a temporary registry; replay a clip with it; `zhizhi models
evaluate` against a COCO model on the val split and on a held-out labelled clip; `zhizhi models
promote` refused by a strict gate and passed by a lenient one. Nothing outside tmp is written:
the registries and the model folder are temporary (ZHIZHI_MODEL_REGISTRY points there)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from common.config import SiteConfig
from edge.analysis.detect.onnx import OnnxDetector
from edge.offline.replay import ReplaySummary, replay_events
from edge.runtime.models import load_registry, register_model, resolve_model_path, verify_model_file
from tests.support.training import bus_patch, parked_vehicle_clip, synthetic_label_set
from training.dataset import BuildParams, BuiltDataset, build_dataset
from training.labels import LabelSet

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ZHIZHI = [sys.executable, "-m", "zhizhi.cli"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CURRENT = "yolov8n-320"  # the COCO model the candidate is compared with
PARK_S = 2.0


class Interrupted(Exception):
    """Raised from a training callback: the run stops as if the machine had gone down."""


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    env: dict[str, str]
    labels: LabelSet
    built: BuiltDataset
    run_dir: Path
    checkpoint_epoch: int  # of last.pt when the run was interrupted
    rows_before_resume: list[dict[str, str]]
    resume: subprocess.CompletedProcess[str]
    export: subprocess.CompletedProcess[str]

    @property
    def candidates(self) -> Path:
        return self.root / "candidates.yaml"

    @property
    def model_dir(self) -> Path:
        return self.root / "models"

    @property
    def main_registry(self) -> Path:
        return self.root / "registry.yaml"


def zhizhi(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZHIZHI, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def results_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open() as stream:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(stream)]


@pytest.fixture(scope="module")
def workspace(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("training")
    # the "current" model lives in a temporary main registry: promote writes there, never
    # into models/registry.yaml
    register_model(load_registry()[CURRENT], root / "registry.yaml", make_default=True)
    env = {**os.environ, "ZHIZHI_MODEL_REGISTRY": str(root / "registry.yaml")}
    env["ZHIZHI_MODEL_DIR"] = str(models_dir)

    labels = synthetic_label_set(root / "clips", clips=3, frames=12)
    params = BuildParams(val_fraction=0.34, every_s=0.0, duplicate_distance=0, seed=1)
    built = build_dataset([labels], root / "dataset", params)

    from training.train import TrainParams, train
    from training.ultra import yolo

    def interrupt(trainer: Any) -> None:
        raise Interrupted(trainer.epoch)

    train_params = TrainParams(
        data=built.data_yaml,
        base=models_dir / "yolov8n.pt",
        epochs=2,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        runs_dir=root / "runs",
        name="smoke",
    )
    with pytest.raises(Interrupted):
        train(train_params, callbacks={"on_model_save": [interrupt]})
    run_dir = root / "runs" / "smoke"
    checkpoint_epoch = int(yolo(run_dir / "weights" / "last.pt").ckpt["epoch"])
    rows_before = results_rows(run_dir)
    # resumed from the command line, which knows only the run's name and folder
    resume = zhizhi(["train", "--resume", "--runs-dir", str(root / "runs"), "--name", "smoke"], env)
    assert resume.returncode == 0, resume.stderr[-3000:]
    export = zhizhi(
        [
            "models",
            "export",
            "--run",
            str(run_dir),
            "--name",
            "smoke-64",
            "--version",
            "2",
            "--registry",
            str(root / "candidates.yaml"),
            "--model-dir",
            str(root / "models"),
            "--int8",
            "auto",
        ],
        env,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    yield Workspace(
        root, env, labels, built, run_dir, checkpoint_epoch, rows_before, resume, export
    )


def test_an_interrupted_run_resumes_from_its_checkpoint(workspace: Workspace) -> None:
    assert workspace.checkpoint_epoch == 0  # interrupted after the first of two epochs
    assert len(workspace.rows_before_resume) == 1
    rows = results_rows(workspace.run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0] == workspace.rows_before_resume[0]  # epoch 1 kept, not trained again
    assert "Resuming training" in workspace.resume.stdout + workspace.resume.stderr
    run = json.loads((workspace.run_dir / "zhizhi-run.json").read_text())
    # the parameters the run was started with, not the resume command's defaults
    assert run["params"]["epochs"] == 2 and run["params"]["imgsz"] == 64
    assert Path(run["params"]["base"]).name == "yolov8n.pt"
    assert run["finished"] and run["resumed"] and run["epochs_done"] == 2
    assert run["dataset_manifest_sha256"] == workspace.built.manifest_sha256

    again = zhizhi(
        ["train", "--resume", "--runs-dir", str(workspace.run_dir.parent), "--name", "smoke"],
        workspace.env,
    )
    assert again.returncode == 2
    assert "nothing to resume" in again.stderr


def test_export_register_and_replay(workspace: Workspace) -> None:
    spec = load_registry(workspace.candidates)["smoke-64"]
    assert spec.input_wh == (64, 64)
    assert spec.dataset_sha256 == workspace.built.manifest_sha256
    assert spec.trained_from == "yolov8n.pt"
    assert any(line.startswith("int8: speed") for line in workspace.export.stdout.splitlines())
    path = resolve_model_path(spec, [workspace.model_dir])
    verify_model_file(spec, path)
    detector = OnnxDetector.load(spec, path=path)
    assert list(detector.names) == ["car", "garbage_bag"]

    source = workspace.labels.sources[0].path
    site = SiteConfig.model_validate(
        {
            "site": {"id": "smoke"},
            "cameras": [
                {
                    "id": "cam",
                    "source": source,
                    "zones": [{"id": "lane", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                    "rules": [
                        {"id": "lane-blocked", "type": "fire_lane", "zone": "lane", "dwell_s": 1}
                    ],
                }
            ],
        }
    )
    items = list(replay_events(site, site.cameras[0], Path(source), None, detector))
    summary = items[-1]
    assert isinstance(summary, ReplaySummary)
    assert summary.frames == 12
    assert summary.detector_runs > 0


def held_out_clip(folder: Path) -> tuple[Path, Path]:
    """A bus parks in a lane at PARK_S; the site's fire-lane rule counts buses only, so the
    COCO model can find the event and the candidate (car, garbage_bag) cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    parked_vehicle_clip(folder / "bus-parked.mp4", bus_patch(), PARK_S)
    labels = {
        "clips": [
            {
                "file": "bus-parked.mp4",
                "camera": "lane-cam",
                "events": [{"type": "fire_lane", "onset_s": PARK_S}],
            }
        ]
    }
    (folder / "labels.yaml").write_text(yaml.safe_dump(labels))
    lane = [[0.15, 0.55], [0.85, 0.55], [0.95, 0.98], [0.05, 0.98]]
    config = {
        "site": {"id": "eval"},
        "cameras": [
            {
                "id": "lane-cam",
                "source": "bus-parked.mp4",
                "detector": {"model": CURRENT},
                "zones": [{"id": "lane", "polygon": lane}],
                "rules": [
                    {
                        "id": "lane-blocked",
                        "type": "fire_lane",
                        "zone": "lane",
                        "dwell_s": 2,
                        "rest_s": 1,
                        "clear_s": 2,
                        "vehicle_classes": ["bus"],
                        "detect_left_objects": False,
                    }
                ],
            }
        ],
    }
    (folder / "site.yaml").write_text(yaml.safe_dump(config))
    return folder / "site.yaml", folder / "labels.yaml"


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE and cv2.imread(str(path)) is not None


def test_evaluate_side_by_side_then_the_gate_decides(workspace: Workspace) -> None:
    clips = workspace.root / "held-out"
    site, labels = held_out_clip(clips)
    out = workspace.root / "eval"
    evaluate = zhizhi(
        [
            "models",
            "evaluate",
            "--candidate",
            "smoke-64",
            "--candidate-registry",
            str(workspace.candidates),
            "--current",
            CURRENT,
            "--data",
            str(workspace.built.data_yaml),
            "--config",
            str(site),
            "--labels",
            str(labels),
            "--clips",
            str(clips),
            "--model-dir",
            str(workspace.model_dir),
            "--out",
            str(out),
        ],
        workspace.env,
    )
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    result = json.loads((out / "evaluation.json").read_text())
    current, candidate = result["models"]["current"], result["models"]["candidate"]
    assert (current["name"], candidate["name"]) == (CURRENT, "smoke-64")
    for entry in (current, candidate):
        assert 0.0 <= entry["detector"]["map50_95"] <= entry["detector"]["map50"] <= 1.0
    assert current["detector"]["classes_left_out"] == ["garbage_bag"]  # COCO has no such class
    assert candidate["detector"]["classes_left_out"] == []
    lane = {
        role: result["models"][role]["events"]["types"]["fire_lane"] for role in result["models"]
    }
    assert lane["current"]["true_positives"] == 1 and lane["current"]["recall"] == 1.0
    assert lane["candidate"]["misses"] == 1 and lane["candidate"]["recall"] == 0.0
    assert lane["candidate"]["false_alarms"] == 0
    lines = evaluate.stdout.splitlines()  # the table alone: Ultralytics' log is on stderr
    assert lines[0].startswith("metric | current (yolov8n-320 v1) | candidate (smoke-64 v2)")
    assert any(line.startswith("map50 | ") for line in lines)
    assert "fire_lane recall | 1.0 | 0.0" in lines
    for role in ("current", "candidate"):
        plots = {Path(p).name for p in result["models"][role]["detector"]["plots"]}
        assert any("PR_curve" in name for name in plots), plots
        assert any(name.startswith("confusion_matrix") for name in plots), plots
        assert all(is_png(Path(p)) for p in result["models"][role]["detector"]["plots"])

    promote = [
        "models",
        "promote",
        "--evaluation",
        str(out / "evaluation.json"),
        "--candidate-registry",
        str(workspace.candidates),
        "--registry",
        str(workspace.main_registry),
    ]
    strict = workspace.root / "strict.yaml"
    strict.write_text("max_recall_drop: 0.0\n")
    refused = zhizhi([*promote, "--gate", str(strict)], workspace.env)
    assert refused.returncode == 2
    assert "REGRESSION fire_lane: recall worse by +1.000 (margin 0.000)" in refused.stdout
    assert "not promoted: smoke-64 2" in refused.stderr
    record = json.loads((out / "promotion.json").read_text())
    assert record["decision"]["promoted"] is False and record["registry"] is None
    assert record["current"]["name"] == CURRENT and record["gate"]["max_recall_drop"] == 0.0
    assert "smoke-64" not in load_registry(workspace.main_registry)

    lenient = workspace.root / "lenient.yaml"
    lenient.write_text("max_recall_drop: 1.0\n")
    passed = zhizhi([*promote, "--gate", str(lenient), "--make-default"], workspace.env)
    assert passed.returncode == 0, passed.stderr
    assert "ok fire_lane: recall worse by +1.000 (margin 1.000)" in passed.stdout
    record = json.loads((out / "promotion.json").read_text())
    assert record["decision"]["promoted"] is True
    assert record["registry"] == str(workspace.main_registry)
    assert record["candidate"]["sha256"] == load_registry(workspace.candidates)["smoke-64"].sha256
    main = load_registry(workspace.main_registry)
    assert main.default == "smoke-64" and CURRENT in main
    assert main["smoke-64"].sha256 == record["candidate"]["sha256"]
