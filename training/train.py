"""`zhizhi train`: fine-tune a base model on a built dataset with Ultralytics; resumable and
seeded. Writes a run folder (Ultralytics' own: weights/best.pt, last.pt, results.csv, plots)
plus `zhizhi-run.json`: the parameters before the first epoch (so a resumed run knows what it
was started with), what went in and the validation metrics at the end."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from training.dataset import file_sha256
from training.ultra import auto_device, yolo

logger = logging.getLogger(__name__)
RUN_FILE = "zhizhi-run.json"


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: Path = Field(description="data.yaml of a dataset from `zhizhi data build`")
    base: Path = Field(description="Base weights (.pt), e.g. ../shared/models/yolov8n.pt")
    epochs: int = Field(default=50, gt=0)
    imgsz: int = Field(default=640, ge=32, multiple_of=32)
    batch: int = Field(default=16, gt=0)
    device: str = Field(default="auto", description="auto, cpu, 0, 0,1, ...")
    seed: int = 0
    workers: int = Field(default=2, ge=0)
    patience: int = Field(default=20, gt=0)
    runs_dir: Path = Path("runs/train")
    name: str = "candidate"


@dataclass(frozen=True, slots=True)
class TrainResult:
    run_dir: Path
    best: Path
    metrics: dict[str, float]


def box_metrics(results: dict[str, Any]) -> dict[str, float]:
    """`{map50, map50_95, precision, recall}` from Ultralytics' `metrics/...(B)` keys."""
    keys = {
        "metrics/mAP50(B)": "map50",
        "metrics/mAP50-95(B)": "map50_95",
        "metrics/precision(B)": "precision",
        "metrics/recall(B)": "recall",
    }
    return {short: round(float(results[key]), 4) for key, short in keys.items() if key in results}


Callback = Callable[[Any], None]


def train(
    params: TrainParams,
    resume: bool = False,
    callbacks: Mapping[str, Sequence[Callback]] | None = None,
) -> TrainResult:
    """Train (or resume the run `runs_dir/name`) and return the best weights and metrics.

    A new run writes `zhizhi-run.json` (its parameters) before the first epoch, so a resumed
    run records what it was started with, not the command line of the resume. `callbacks` are
    Ultralytics callbacks by event (`on_fit_epoch_end`, ...), for progress or to stop a run.

    Raises:
        FileNotFoundError: resuming a run that has no `weights/last.pt`.
        ValueError: resuming a run that has already finished.
    """
    run_dir = (params.runs_dir / params.name).resolve()
    device = auto_device() if params.device == "auto" else params.device
    if resume:
        model, params = _resumable(run_dir, params)
        _add_callbacks(model, callbacks)
        model.train(resume=True, device=device)
    else:
        model = yolo(params.base.resolve())
        _add_callbacks(model, callbacks)
        run_dir.mkdir(parents=True, exist_ok=True)
        started = params.model_copy(update={"data": params.data.resolve()})
        _write_run(run_dir, {"params": started.model_dump(mode="json"), "finished": False})
        model.train(
            data=str(params.data.resolve()),
            epochs=params.epochs,
            imgsz=params.imgsz,
            batch=params.batch,
            device=device,
            seed=params.seed,
            deterministic=True,
            workers=params.workers,
            patience=params.patience,
            project=str(run_dir.parent),
            name=run_dir.name,
            exist_ok=True,
            plots=True,
            verbose=True,
        )
    trainer = model.trainer
    run_dir = Path(trainer.save_dir).resolve()
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        best = run_dir / "weights" / "last.pt"
    metrics = box_metrics(dict(trainer.metrics or {}))
    data = Path(str(trainer.args.data)).resolve()
    manifest = data.parent / "manifest.json"
    record = {
        "params": params.model_copy(update={"data": data}).model_dump(mode="json"),
        "finished": True,
        "resumed": resume,
        "epochs_done": int(trainer.epoch) + 1,
        "base_sha256": file_sha256(params.base) if params.base.is_file() else None,
        "dataset_manifest_sha256": file_sha256(manifest) if manifest.is_file() else None,
        "best": str(best),
        "metrics": metrics,
    }
    _write_run(run_dir, record)
    logger.info("training done: %s %s", best, metrics)
    return TrainResult(run_dir, best, metrics)


def _add_callbacks(model: Any, callbacks: Mapping[str, Sequence[Callback]] | None) -> None:
    for event, functions in (callbacks or {}).items():
        for function in functions:
            model.add_callback(event, function)


def _resumable(run_dir: Path, params: TrainParams) -> tuple[Any, TrainParams]:
    """The model of `run_dir/weights/last.pt` and the parameters the run was started with
    (from `zhizhi-run.json`, else from the checkpoint's own training arguments)."""
    last = run_dir / "weights" / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist")
    model = yolo(last)
    checkpoint = model.ckpt or {}
    if checkpoint.get("epoch", -1) < 0 or checkpoint.get("optimizer") is None:
        raise ValueError(f"{run_dir} has finished training: nothing to resume (start a new run)")
    if (run_dir / RUN_FILE).is_file():
        started = TrainParams.model_validate(read_run(run_dir)["params"])
    else:  # a run started by Ultralytics itself
        args = checkpoint.get("train_args", {})
        started = TrainParams(
            data=Path(str(args["data"])),
            base=Path(str(args["model"])),
            epochs=int(args["epochs"]),
            imgsz=int(args["imgsz"]),
            batch=int(args["batch"]) if int(args["batch"]) > 0 else params.batch,
            device=str(args.get("device") or params.device),
            seed=int(args.get("seed", 0)),
            workers=int(args.get("workers", params.workers)),
            patience=int(args.get("patience", params.patience)),
            runs_dir=run_dir.parent,
            name=run_dir.name,
        )
    logger.info(
        "resuming %s after epoch %d of %d", run_dir, checkpoint["epoch"] + 1, started.epochs
    )
    return model, started.model_copy(update={"runs_dir": run_dir.parent, "name": run_dir.name})


def _write_run(run_dir: Path, record: dict[str, Any]) -> None:
    (run_dir / RUN_FILE).write_text(json.dumps(record, indent=1))


def read_run(run_dir: Path) -> dict[str, Any]:
    """The `zhizhi-run.json` of a training run."""
    data: dict[str, Any] = json.loads((run_dir / RUN_FILE).read_text())
    return data
