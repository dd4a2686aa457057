"""The training commands of `zhizhi`: `data import|build`, `train`, and `models export|evaluate|
promote|publish|rollback`. Only typer here: every heavy import (ultralytics, torch) happens
inside a command, so `zhizhi --help` and the edge never load them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from zhizhi.console import fail

USER_MODEL_DIR = Path.home() / ".cache" / "zhizhi" / "models"  # searched by the edge
data_app = typer.Typer(help="Labelled data: import labels, build datasets.", no_args_is_help=True)


def _say(line: str) -> None:
    print(line)  # noqa: T201


@data_app.command("import")
def data_import(
    fmt: Annotated[
        str, typer.Argument(metavar="FORMAT", help="cvat-video | cvat-yolo | yolo | coco")
    ],
    path: Annotated[Path, typer.Argument(help="XML file, export folder, data.yaml or JSON file")],
    out: Annotated[Path, typer.Option(help="Write the project's label file (JSON) here")],
    mapping: Annotated[Path | None, typer.Option(help="Class mapping YAML")] = None,
    clip: Annotated[Path | None, typer.Option(help="The video the labels are for")] = None,
    images: Annotated[Path | None, typer.Option(help="COCO: folder of the images")] = None,
    clip_pattern: Annotated[
        str | None, typer.Option(help="Regex with groups clip and frame, for image names")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Split group of every source imported (default: its clip's name)"),
    ] = None,
) -> None:
    """Import labels, map classes, check them: every problem listed, then non-zero exit."""
    from pydantic import ValidationError

    from training import importers
    from training.importers.base import DEFAULT_CLIP_PATTERN

    pattern = clip_pattern or DEFAULT_CLIP_PATTERN
    try:
        classes = importers.load_mapping(mapping)
    except (OSError, ValidationError) as error:
        fail(f"{mapping}: invalid mapping: {str(error).splitlines()[0]}")
    if fmt == "cvat-video":
        result = importers.import_cvat_video(path, classes, clip)
    elif fmt == "cvat-yolo":
        result = importers.import_cvat_yolo(path, classes, clip, pattern)
    elif fmt == "yolo":
        result = importers.import_yolo_folder(path, classes, pattern)
    elif fmt == "coco":
        result = importers.import_coco(path, classes, images, pattern)
    else:
        fail(f"unknown format {fmt!r}; one of {', '.join(importers.FORMATS)}")
    if result.problems:
        count = len(result.problems)
        fail(f"{path}: {count} label problem(s)", [str(p) for p in result.problems])
    labels = result.label_set()
    if group is not None:
        sources = [source.model_copy(update={"group": group}) for source in labels.sources]
        labels = labels.model_copy(update={"sources": sources})
    labels.save(out)
    frames = sum(len(s.frames) for s in labels.sources)
    _say(f"{out}: {len(labels.sources)} source(s), {frames} labelled frame(s)")


@data_app.command("export-feedback")
def data_export_feedback(
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000")],
    out: Annotated[Path, typer.Option(help="Folder for the labelling task (CVAT YOLO 1.1)")],
    token: Annotated[
        str | None, typer.Option(help="API token (viewer or more); default $ZHIZHI_TOKEN")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="Incident statuses to export (repeat); default false_alarm"),
    ] = None,
    site: Annotated[str | None, typer.Option(help="Only this site")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this event type")] = None,
    since: Annotated[str | None, typer.Option(help="Only incidents opened since (YYYY-MM-DD)")] = (
        None
    ),
) -> None:
    """Incidents marked false alarm (or closed) as a CVAT labelling task: the alert frames with
    the model's boxes, the clips and the operators' notes."""
    import os

    import httpx

    from training.feedback import FeedbackError, export_feedback

    bearer = token or os.environ.get("ZHIZHI_TOKEN")
    if not bearer:
        fail("export-feedback: give --token or set ZHIZHI_TOKEN")
    headers = {"Authorization": f"Bearer {bearer}"}
    try:
        with httpx.Client(base_url=server, headers=headers, timeout=60) as client:
            summary = export_feedback(client, out, status or ["false_alarm"], site, type_, since)
    except (FeedbackError, httpx.HTTPError) as error:
        fail(f"export-feedback: {error}")
    for line in summary.skipped:
        _say(f"skipped {line}")
    _say(
        f"{out}: {summary.frames} frame(s) from {summary.incidents} incident(s), "
        f"labels: {', '.join(summary.labels) or '-'}"
    )


@data_app.command("preannotate")
def data_preannotate(
    plan: Annotated[Path, typer.Option(help="Labelling plan YAML (teacher, class map, fixes)")],
    clips: Annotated[Path, typer.Option(help="Folder of the clips the plan names")],
    out: Annotated[Path, typer.Option(help="Folder for one CVAT for video XML per clip")],
    clip: Annotated[
        list[str] | None, typer.Option(help="Only these clips (repeat); default every clip")
    ] = None,
    cache: Annotated[
        Path, typer.Option(help="Teacher detections are cached here (JSON per clip)")
    ] = Path("runs/teacher"),
    refresh: Annotated[bool, typer.Option(help="Run the teacher even when cached")] = False,
    teacher_only: Annotated[
        bool, typer.Option(help="Write the teacher's labels alone (class map, no fixes)")
    ] = False,
) -> None:
    """Pre-annotate clips with the teacher, apply the plan's corrections, write CVAT XML."""
    import os

    from pydantic import ValidationError

    from training.preannotate import (
        ClipPlan,
        clip_tracks,
        cvat_video_xml,
        load_plan,
        segment_tracks,
        teacher_run,
    )

    try:
        labelling = load_plan(plan)
    except (OSError, ValidationError) as error:
        fail(f"{plan}: invalid plan: {str(error).splitlines()[0]}")
    names = clip or sorted(labelling.clips)
    if not names:
        fail(f"{plan}: the plan names no clip; give --clip")
    model_dir = Path(os.environ.get("ZHIZHI_MODEL_DIR", str(USER_MODEL_DIR)))
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            run = teacher_run(clips / name, labelling, model_dir, cache, refresh)
        except OSError as error:
            fail(f"data preannotate: {name}: {error}")
        used = labelling
        if teacher_only:
            used = labelling.model_copy(update={"clips": {name: ClipPlan()}})
        tracks = clip_tracks(run, used)
        size = (run.width, run.height)
        segments = used.clips.get(name, ClipPlan()).segments or {"": (0, run.frames - 1)}
        for segment, (first, last) in segments.items():
            try:
                part = segment_tracks(tracks, first, last, run.frames - 1)
            except ValueError as error:
                fail(f"data preannotate: {name} segment {segment}: {error}")
            stem = Path(name).stem + (f".{segment}" if segment else "")
            target = out / f"{stem}.xml"
            xml = cvat_video_xml(part, name, size, run.frames, used.classes, (first, last))
            target.write_text(xml, encoding="utf-8")
            counts: dict[str, int] = {}
            for track in part:
                counts[track.label] = counts.get(track.label, 0) + 1
            summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no track"
            _say(f"{target}: frames {first}-{last}, teacher every {run.step}; tracks {summary}")


@data_app.command("preview")
def data_preview(
    labels: Annotated[Path, typer.Argument(help="CVAT for video XML")],
    clip: Annotated[Path, typer.Option(help="The video the labels are for")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs")],
    frame: Annotated[list[int], typer.Option(help="Frame number (repeat)")],
    mapping: Annotated[Path | None, typer.Option(help="Class mapping YAML")] = None,
) -> None:
    """Draw a label file's boxes on frames of its clip (PNG), to check labels by eye."""
    from training import importers
    from training.preview import render_frames

    result = importers.import_cvat_video(labels, importers.load_mapping(mapping), clip)
    if result.problems:
        fail(
            f"{labels}: {len(result.problems)} label problem(s)", [str(p) for p in result.problems]
        )
    for path in render_frames(result.label_set().sources[0], result.classes, frame, out):
        _say(str(path))


@data_app.command("build")
def data_build(
    labels: Annotated[list[Path], typer.Option(help="Label files from `data import` (repeat)")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write")],
    val_fraction: Annotated[float, typer.Option(help="Share of frames for validation")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split")] = 0,
    every_s: Annotated[float, typer.Option(help="Sampled frames at least this far apart")] = 0.5,
    duplicate_distance: Annotated[int, typer.Option(help="pHash bits counted as a repeat")] = 4,
    max_frames: Annotated[int, typer.Option(help="At most this many frames per source")] = 500,
    val_group: Annotated[
        list[str] | None,
        typer.Option(
            help="These groups (clips) are the val split, every other one trains "
            "(repeat; replaces --val-fraction)"
        ),
    ] = None,
) -> None:
    """Sample frames, split train/val by clip, write the Ultralytics layout and a manifest."""
    from pydantic import ValidationError

    from training.dataset import BuildParams, build_dataset
    from training.labels import LabelSet

    try:
        sets = [LabelSet.load(path) for path in labels]
        params = BuildParams(
            val_fraction=val_fraction,
            seed=seed,
            every_s=every_s,
            duplicate_distance=duplicate_distance,
            max_frames_per_source=max_frames,
            val_groups=sorted(val_group or []),
        )
        built = build_dataset(sets, out, params)
    except (OSError, ValidationError, ValueError) as error:
        fail(f"data build: {str(error).splitlines()[0]}")
    _say(f"{built.data_yaml}: manifest sha256 {built.manifest_sha256}")
    for split, counts in built.counts.items():
        _say(f"  {split}: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v))


def train(
    data: Annotated[Path, typer.Option(help="data.yaml from `zhizhi data build`")] = Path(
        "dataset/data.yaml"
    ),
    base: Annotated[Path, typer.Option(help="Base weights (.pt)")] = Path(
        "../shared/models/yolov8n.pt"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 50,
    imgsz: Annotated[int, typer.Option(min=32, help="Input size, a multiple of 32")] = 640,
    batch: Annotated[int, typer.Option(min=1)] = 16,
    device: Annotated[str, typer.Option(help="auto | cpu | 0 | 0,1")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(min=0)] = 2,
    runs_dir: Annotated[Path, typer.Option(help="Folder of training runs")] = Path("runs/train"),
    name: Annotated[str, typer.Option(help="Run name (a folder in --runs-dir)")] = "candidate",
    freeze: Annotated[
        int, typer.Option(min=0, help="Keep the first N layers as the base has them (10: backbone)")
    ] = 0,
    head_from: Annotated[
        list[str] | None,
        typer.Option(
            help="NEW=BASE: start class NEW's head from the base's class BASE (repeat); "
            "classes of the same name are carried anyway"
        ),
    ] = None,
    val_each_epoch: Annotated[
        bool, typer.Option(help="Validate after every epoch (else only after the last)")
    ] = True,
    resume: Annotated[
        bool,
        typer.Option(
            help="Resume the interrupted run --runs-dir/--name from its last.pt, with the "
            "parameters it was started with (only --device is taken from this command)"
        ),
    ] = False,
) -> None:
    """Fine-tune a base model with Ultralytics (offline; CPU or GPU), seeded and resumable."""
    from pydantic import ValidationError

    from training.train import TrainParams
    from training.train import train as run_training

    pairs = [item.split("=", 1) for item in head_from or []]
    if any(len(pair) != 2 for pair in pairs):
        fail("train: --head-from takes NEW=BASE, e.g. garbage_bag=handbag")
    try:
        params = TrainParams(
            data=data,
            base=base,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            seed=seed,
            workers=workers,
            runs_dir=runs_dir,
            name=name,
            freeze=freeze,
            head_from=dict(pairs),
            val_each_epoch=val_each_epoch,
        )
        if not resume and not data.is_file():
            fail(f"train: {data} does not exist (build it with `zhizhi data build`)")
        result = run_training(params, resume=resume)
    except (OSError, ValidationError, ValueError) as error:
        fail(f"train: {str(error).splitlines()[0]}")
    _say(f"run {result.run_dir}: best {result.best} {json.dumps(result.metrics)}")


def models_export(
    run: Annotated[Path, typer.Option(help="Run folder of `zhizhi train`")],
    name: Annotated[str, typer.Option(help="Registry name of the new model")],
    version: Annotated[str, typer.Option(help="Its version (copied into every event)")],
    registry: Annotated[
        Path, typer.Option(help="Candidate registry file to register it in")
    ] = Path("runs/candidates.yaml"),
    model_dir: Annotated[
        Path, typer.Option(help="Where the ONNX file is written")
    ] = USER_MODEL_DIR,
    imgsz: Annotated[
        int | None, typer.Option(help="Input size (default: the training size)")
    ] = None,
    int8: Annotated[
        str, typer.Option(help="auto (measure, then decide) | never | always")
    ] = "auto",
    min_speedup: Annotated[float, typer.Option(help="INT8 must be this much faster")] = 1.1,
    max_map_drop: Annotated[float, typer.Option(help="INT8 may lose this much mAP50")] = 0.01,
) -> None:
    """Export to ONNX (fixed size, opset 17, names in metadata), verify it with the edge's
    detector, decide on INT8 by measurement, register it."""
    from edge.errors import EdgeError
    from training.export import export_and_register

    if int8 not in ("auto", "never", "always"):
        fail(f"--int8 must be auto, never or always, got {int8!r}")
    try:
        result = export_and_register(
            run,
            name,
            version,
            model_dir,
            registry,
            imgsz=imgsz,
            int8=int8,
            min_speedup=min_speedup,
            max_map_drop=max_map_drop,
        )
    except (EdgeError, OSError, ValueError, KeyError) as error:
        fail(f"models export: {error}")
    for line in result.lines:
        _say(line)


def models_evaluate(
    candidate: Annotated[str, typer.Option(help="Candidate model name")],
    out: Annotated[Path, typer.Option(help="Folder for evaluation.json and the plots")],
    candidate_registry: Annotated[Path, typer.Option(help="Registry holding the candidate")] = (
        Path("runs/candidates.yaml")
    ),
    current: Annotated[
        str | None, typer.Option(help="Current model (default: registry default)")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="data.yaml: detector mAP on its val split")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Site config for held-out clips")] = None,
    labels: Annotated[Path | None, typer.Option(help="Event labels of held-out clips")] = None,
    clips: Annotated[Path | None, typer.Option(help="Folder of the held-out clips")] = None,
    model_dir: Annotated[
        list[Path] | None,
        typer.Option(help="Look for model files here first (repeat), e.g. export's --model-dir"),
    ] = None,
) -> None:
    """mAP50 / mAP50-95 on the val split and the `zhizhi eval` report on held-out clips, for
    the current and the candidate model side by side; PR and confusion plots saved."""
    import contextlib

    from edge.errors import EdgeError
    from edge.offline.evaluation import load_labels
    from edge.runtime.models import load_registry, model_search_dirs, resolve_model_path
    from training.evaluate import ModelUnderTest, evaluate_models, side_by_side
    from zhizhi.cli import load_config_or_fail

    if (config is None) != (labels is None) or (labels is None) != (clips is None):
        fail("models evaluate: give --config, --labels and --clips together")
    if data is None and labels is None:
        fail("models evaluate: give --data, or --config/--labels/--clips, or both")
    try:
        main = load_registry()
        current_name = current or main.default
        if current_name is None:
            fail("models evaluate: the registry has no default; give --current")
        cand_registry = load_registry(candidate_registry)
        models = []
        for role, registry, name in (
            ("current", main, current_name),
            ("candidate", cand_registry, candidate),
        ):
            spec = registry[name]
            dirs = [*(model_dir or []), *model_search_dirs()]
            models.append(ModelUnderTest(role, spec, resolve_model_path(spec, dirs)))
        site = load_config_or_fail(config) if config is not None else None
        labels_file = load_labels(labels) if labels is not None else None
        # Ultralytics logs to stdout: keep stdout for the side-by-side table
        with contextlib.redirect_stdout(sys.stderr):
            result = evaluate_models(
                models, out, data_yaml=data, site=site, labels=labels_file, clips_dir=clips
            )
    except (EdgeError, OSError, ValueError, KeyError) as error:
        fail(f"models evaluate: {str(error).splitlines()[0]}")
    for line in side_by_side(result):
        _say(line)
    _say(f"written: {out / 'evaluation.json'}")


def models_promote(
    evaluation: Annotated[Path, typer.Option(help="evaluation.json of `models evaluate`")],
    candidate_registry: Annotated[Path, typer.Option(help="Registry holding the candidate")] = (
        Path("runs/candidates.yaml")
    ),
    gate: Annotated[Path | None, typer.Option(help="Gate margins YAML")] = None,
    registry: Annotated[Path | None, typer.Option(help="Registry to promote into")] = None,
    make_default: Annotated[bool, typer.Option(help="Make it the registry's default")] = False,
) -> None:
    """Promote the evaluated candidate when no event type regresses beyond the gate's margins;
    the decision and its reasons are printed and recorded beside the evaluation."""
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from edge.errors import EdgeError
    from edge.runtime.models import load_registry, register_model
    from training.gate import detector_figures, judge, load_gate

    try:
        result = json.loads(evaluation.read_text(encoding="utf-8"))
        models = result["models"]
        current, candidate = models["current"], models["candidate"]
        margins = load_gate(gate)
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(f"models promote: {evaluation}: not an evaluation of `models evaluate`: {error}")
    detector = detector_figures(result)
    decision = judge(current.get("events", {}), candidate.get("events", {}), margins, detector)
    record = {
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "current": {k: current.get(k) for k in ("name", "version", "sha256")},
        "candidate": candidate,
        "gate": margins.model_dump(),
        "decision": decision.model_dump(),
        "registry": None,
    }
    target = evaluation.parent / "promotion.json"
    target.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    for reason in decision.reasons:
        _say(reason)
    if not decision.promoted:
        fail(f"not promoted: {candidate['name']} {candidate['version']}")
    try:
        spec = load_registry(candidate_registry)[candidate["name"]]
        if spec.sha256 != candidate["sha256"]:
            fail("the candidate in the registry is not the one evaluated (sha256 differs)")
        updated = register_model(spec, registry, make_default=make_default)
    except (EdgeError, OSError, ValidationError) as error:
        fail(f"models promote: {str(error).splitlines()[0]}")
    record["registry"] = str(updated.path)
    target.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    _say(f"promoted {spec.name} {spec.version} into {updated.path}")


def models_publish(
    name: Annotated[str, typer.Argument(help="Registry name of the model to roll out")],
    server: Annotated[str, typer.Option(help="Server URL that hosts the file")],
    mqtt: Annotated[str, typer.Option(help="Broker, mqtt://host:port")],
    site: Annotated[str, typer.Option(help="Site id")],
    edges: Annotated[str, typer.Option(help="Edge ids, comma-separated")],
    token: Annotated[str, typer.Option(envvar="ZHIZHI_TOKEN", help="Admin token")],
    canary: Annotated[
        str | None, typer.Option(help="This edge first; the rest if it works")
    ] = None,
    registry: Annotated[Path | None, typer.Option(help="Registry holding the model")] = None,
    replaces: Annotated[
        str | None, typer.Option(help="Model name the edges' cameras are configured with")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Wait this long for each edge")] = 300.0,
    mqtt_username: Annotated[str | None, typer.Option(envvar="ZHIZHI_MQTT_USERNAME")] = None,
    mqtt_password: Annotated[str | None, typer.Option(envvar="ZHIZHI_MQTT_PASSWORD")] = None,
) -> None:
    """Upload the model to the server and roll it out over MQTT, the canary first."""
    import httpx

    from edge.errors import EdgeError
    from edge.runtime.models import load_registry, resolve_model_path, verify_model_file
    from training.publish import EdgeCommander, RolloutFailed, publish, upload_model

    targets = [edge.strip() for edge in edges.split(",") if edge.strip()]
    if canary is not None and canary not in targets:
        targets.insert(0, canary)
    try:
        spec = load_registry(registry)[name]
        path = resolve_model_path(spec)
        verify_model_file(spec, path)
        url = upload_model(server, token, spec, path)
        commander = EdgeCommander(mqtt, site, mqtt_username, mqtt_password)
    except (EdgeError, OSError, httpx.HTTPError) as error:
        fail(f"models publish: {error}")
    try:
        lines = publish(
            commander, spec, url, targets, canary, replaces=replaces, timeout_s=timeout_s
        )
    except RolloutFailed as error:
        fail(f"models publish: {error}")
    finally:
        commander.close()
    for line in lines:
        _say(line)
    if any(line.startswith("FAILED") for line in lines):
        raise typer.Exit(1)


def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name the cameras are configured with")],
    mqtt: Annotated[str, typer.Option(help="Broker, mqtt://host:port")],
    site: Annotated[str, typer.Option(help="Site id")],
    edges: Annotated[str, typer.Option(help="Edge ids, comma-separated")],
) -> None:
    """Tell edges to go back to the model they ran before the last roll-out of NAME."""
    import uuid

    from common.commands import RollbackCommand
    from training.publish import EdgeCommander

    try:
        commander = EdgeCommander(mqtt, site)
    except OSError as error:
        fail(f"models rollback: {error}")
    try:
        for edge in (e.strip() for e in edges.split(",") if e.strip()):
            commander.send(edge, RollbackCommand(command_id=uuid.uuid4().hex, name=name))
            _say(f"rollback sent to {edge}")
    finally:
        commander.close()


def register(app: typer.Typer, models_app: typer.Typer) -> None:
    """Add the training commands to the `zhizhi` app and its `models` group."""
    app.add_typer(data_app, name="data")
    app.command("train")(train)
    models_app.command("export")(models_export)
    models_app.command("evaluate")(models_evaluate)
    models_app.command("promote")(models_promote)
    models_app.command("publish")(models_publish)
    models_app.command("rollback")(models_rollback)
