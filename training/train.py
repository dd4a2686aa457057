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
    freeze: int = Field(
        default=0, ge=0, description="The first N layers keep the base's weights (10: backbone)"
    )
    head_from: dict[str, str] = Field(
        default_factory=dict,
        description="New class -> base class whose head row it starts from, besides same names "
        "(e.g. garbage_bag: handbag)",
    )
    val_each_epoch: bool = Field(
        default=True,
        description="Validate after every epoch (best.pt is the best of them); false: only "
        "after the last (a CPU budget spent on training instead)",
    )
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
        base_names = [str(model.names[i]) for i in sorted(model.names)]
        carry = _head_carrier(base_names, model.model, params.head_from)
        _add_callbacks(model, {"on_pretrain_routine_end": [carry]})
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
            freeze=params.freeze or None,
            val=params.val_each_epoch,
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


def head_rows(
    new_names: Sequence[str], base_names: Sequence[str], aliases: Mapping[str, str]
) -> dict[int, int]:
    """New class id -> base class id whose classification row it starts from: the same name,
    else the alias's. Pure.

    >>> base = ["person", "car", "handbag"]
    >>> head_rows(["car", "garbage_bag", "van"], base, {"garbage_bag": "handbag"})
    {0: 1, 1: 2}
    """
    index = {name: i for i, name in enumerate(base_names)}
    rows = {}
    for new_id, name in enumerate(new_names):
        source = name if name in index else aliases.get(name)
        if source in index:
            rows[new_id] = index[source]
    return rows


def carry_class_heads(base_detect: Any, new_detect: Any, rows: Mapping[int, int]) -> int:
    """Start the new detector's classification branch from the base's, for the classes in
    `rows` (new id -> base id); returns how many scales were carried.

    Ultralytics carries over every layer whose shape is unchanged, which leaves out the whole
    classification branch when the class count changes: its width is `max(ch, min(nc, 100))`
    (80 for COCO's 80 classes, 64 for 10 classes on YOLOv8n). Here each scale's branch (two
    convolutions with batch norm, then the 1x1 class layer) is carried by keeping the base's
    most useful channels: those whose weights matter most to the kept classes' rows, chosen
    from the last layer back. With as many channels as the base this is an exact copy.
    """
    import torch

    carried = 0
    with torch.no_grad():
        for base_branch, new_branch in zip(base_detect.cv3, new_detect.cv3, strict=True):
            base_mid, base_out = list(base_branch[:-1]), base_branch[-1]
            new_mid, new_out = list(new_branch[:-1]), new_branch[-1]
            if len(base_mid) != len(new_mid) or not all(
                hasattr(m, "conv") and hasattr(m, "bn") for m in (*base_mid, *new_mid)
            ):
                raise ValueError("unexpected classification branch layout")
            wanted = list(rows.values()) or list(range(base_out.weight.shape[0]))
            # channels kept at each layer's output, chosen from the class rows backwards
            weight = base_out.weight.float()[wanted].flatten(1)  # (classes, channels)
            keep: list[torch.Tensor] = []
            for base_layer, new_layer in zip(reversed(base_mid), reversed(new_mid), strict=True):
                width = min(new_layer.conv.weight.shape[0], base_layer.conv.weight.shape[0])
                chosen = weight.norm(dim=0).argsort(descending=True)[:width].sort().values
                keep.insert(0, chosen)
                kept_out = base_layer.conv.weight.float()[chosen]  # (out, in, k, k)
                weight = kept_out.permute(0, 2, 3, 1).reshape(-1, kept_out.shape[1])
            inputs = torch.arange(base_mid[0].conv.weight.shape[1])
            for base_layer, new_layer, chosen in zip(base_mid, new_mid, keep, strict=True):
                source = base_layer.conv.weight.float()[chosen][:, inputs]
                target = new_layer.conv.weight
                target[: source.shape[0], : source.shape[1]].copy_(source)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(new_layer.bn, name)[: len(chosen)].copy_(
                        getattr(base_layer.bn, name).float()[chosen]
                    )
                inputs = chosen
            for new_id, base_id in rows.items():
                row = base_out.weight.float()[base_id][inputs]
                new_out.weight[new_id, : row.shape[0]].copy_(row)
                new_out.bias[new_id].copy_(base_out.bias.float()[base_id])
            carried += 1
    return carried


def _head_carrier(base_names: list[str], base_model: Any, aliases: Mapping[str, str]) -> Callback:
    """An `on_pretrain_routine_end` callback that carries class rows into a new run's model
    (and its EMA copy); a resumed run keeps its own."""
    base_detect = base_model.model[-1]

    def carry(trainer: Any) -> None:
        if trainer.start_epoch > 0:
            return
        names = [str(trainer.data["names"][i]) for i in sorted(trainer.data["names"])]
        if names == base_names:
            return  # same classes: Ultralytics loaded the whole head
        rows = head_rows(names, base_names, aliases)
        models = [trainer.model, *([trainer.ema.ema] if trainer.ema else [])]
        for model in models:
            detect = (model.module if hasattr(model, "module") else model).model[-1]
            carry_class_heads(base_detect, detect, rows)
        carried = {names[n]: base_names[b] for n, b in rows.items()}
        logger.info("class heads carried from the base model: %s", carried)

    return carry


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
