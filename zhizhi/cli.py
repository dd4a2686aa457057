"""The `zhizhi` command (contract section 1). Heavy imports stay inside the commands, so an edge
install never loads server code and `zhizhi config check` starts fast."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from common.config import ConfigError, EvidenceFaces, SiteConfig, load_site_config
from zhizhi.console import fail

app = typer.Typer(
    name="zhizhi",
    help="智治 Zhizhi: edge video analytics for residential communities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Site configuration.", no_args_is_help=True)
edge_app = typer.Typer(help="The edge worker.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (figures go to docs/benchmarks.md).", no_args_is_help=True)
models_app = typer.Typer(help="Models in the registry.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(edge_app, name="edge")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
if importlib.util.find_spec("training") is not None:  # not in the edge and server images
    from training.cli import register as register_training_commands

    register_training_commands(app, models_app)  # data, train, models export|evaluate|...
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
user_app = typer.Typer(help="Command-center users.", no_args_is_help=True)
app.add_typer(user_app, name="user")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Site config YAML")]


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def load_config_or_fail(path: Path) -> SiteConfig:
    try:
        return load_site_config(path)
    except ConfigError as error:
        count = len(error.problems)
        fail(
            f"{path}: invalid site config ({count} problem{'s' if count != 1 else ''})",
            [str(problem) for problem in error.problems],
        )


def _run_guarded(action: str, func: object) -> object:
    """Turn the edge's expected errors into one-line reasons."""
    from edge.analysis.pipeline import UnsupportedRuleError
    from edge.errors import EdgeError

    try:
        return func()  # type: ignore[operator]
    except (EdgeError, UnsupportedRuleError) as error:
        fail(f"{action}: {error}")
    except KeyError as error:
        fail(f"{action}: {error.args[0] if error.args else error}")
    except OSError as error:
        fail(f"{action}: {error}")


@config_app.command("check")
def config_check(
    path: Annotated[Path, typer.Argument(help="Site config YAML to validate")],
) -> None:
    """Validate a site config: exit 0, or non-zero with every problem listed."""
    site = load_config_or_fail(path)
    cameras = len(site.cameras)
    rules = sum(len(c.rules) for c in site.cameras)
    print(f"{path}: valid (site {site.site.id}, {cameras} camera(s), {rules} rule(s))")


@config_app.command("register")
def config_register(
    path: Annotated[Path, typer.Argument(help="Site config YAML whose names to register")],
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://10.0.0.2:8080")],
    token: Annotated[
        str | None, typer.Option(envvar="ZHIZHI_TOKEN", help="An admin's or the site's edge token")
    ] = None,
) -> None:
    """Register the site's, cameras', zones' and rules' names with the server (the dashboard
    shows them instead of ids); nothing else of the config leaves the machine."""
    import httpx

    from common.directory import directory_from_config

    site = load_config_or_fail(path)
    if not token:
        fail("config register: give --token or ZHIZHI_TOKEN")
    body = directory_from_config(site).model_dump(mode="json")
    url = f"{server.rstrip('/')}/api/v1/sites/{site.site.id}/directory"
    try:
        answer = httpx.put(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.HTTPError as error:
        fail(f"config register: cannot reach the server {server}: {error}")
    if answer.status_code != 204:
        fail(f"config register: the server answered {answer.status_code}: {answer.text[:200]}")
    cameras = len(body["cameras"])
    print(f"{path}: names of site {site.site.id} and {cameras} camera(s) registered with {server}")


@edge_app.command("replay")
def edge_replay(
    config: ConfigOption,
    camera: Annotated[str, typer.Option(help="Camera id in the site config")],
    source: Annotated[Path, typer.Option(help="Video file to replay")],
    out: Annotated[Path, typer.Option(help="Events, one JSON object per line")],
    evidence_dir: Annotated[
        Path | None, typer.Option(help="Write evidence files (JPEG, MP4) here")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr")] = True,
) -> None:
    """Run one camera's full analytics on a video file, as fast as the machine allows."""
    setup_logging(quiet=True)
    site = load_config_or_fail(config)
    if camera not in {c.id for c in site.cameras}:
        fail(f"{config}: no camera {camera!r} (cameras: {', '.join(c.id for c in site.cameras)})")
    from edge.offline.replay import replay_to_file
    from zhizhi.progress import FrameProgress

    def run() -> object:
        out.parent.mkdir(parents=True, exist_ok=True)
        with (
            out.open("w", encoding="utf-8") as stream,
            FrameProgress(f"replay {source.name}", enabled=progress) as bar,
        ):
            return replay_to_file(site, camera, source, stream, evidence_dir, bar.update)

    result = _run_guarded("replay", run)
    assert isinstance(result, tuple)  # noqa: S101
    print(result[1].line())


@app.command("eval")
def evaluate(
    config: ConfigOption,
    labels: Annotated[Path, typer.Option(help="Labels YAML (contract section 6)")],
    clips: Annotated[Path, typer.Option(help="Folder the label files are relative to")],
    out: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = None,
    evidence_dir: Annotated[Path | None, typer.Option(help="Keep evidence files here")] = None,
) -> None:
    """Replay each labelled clip and score the events against the labels."""
    setup_logging(quiet=True)
    site = load_config_or_fail(config)
    from pydantic import ValidationError

    from edge.offline.evaluation import load_labels
    from edge.offline.replay import evaluate as run_eval
    from zhizhi.progress import print_report

    try:
        labels_file = load_labels(labels)
    except (OSError, ValidationError, ValueError) as error:
        fail(f"{labels}: cannot use these labels: {str(error).splitlines()[0]}")
    for clip in labels_file.clips:
        if clip.camera not in {c.id for c in site.cameras}:
            fail(f"{labels}: clip {clip.file} names camera {clip.camera!r}, not in {config}")

    def on_clip(name: str, summary: object) -> None:
        print(f"  {name}: {summary.line()}", file=sys.stderr)  # type: ignore[attr-defined]

    result = _run_guarded("eval", lambda: run_eval(site, labels_file, clips, evidence_dir, on_clip))
    assert isinstance(result, dict)  # noqa: S101
    print_report(result)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")


@edge_app.command("run")
def edge_run(
    config: ConfigOption,
    camera: Annotated[
        list[str] | None, typer.Option(help="Only these cameras (repeat the option)")
    ] = None,
    events_out: Annotated[
        Path | None, typer.Option(help="Also append every event to this JSONL file")
    ] = None,
    evidence_dir: Annotated[Path, typer.Option(help="Where evidence files are written")] = Path(
        "./zhizhi-evidence"
    ),
    mqtt: Annotated[
        str | None, typer.Option(help="Publish events to this broker, mqtt://host:port")
    ] = None,
    edge_id: Annotated[
        str | None, typer.Option(help="This edge box's id (default: host name)")
    ] = None,
    outbox: Annotated[
        Path, typer.Option(help="Durable outbox of events not yet acked by the server")
    ] = Path("./zhizhi-outbox.sqlite"),
    outbox_quota_gib: Annotated[float, typer.Option(min=0.01, help="Outbox disk quota")] = 2.0,
    server: Annotated[
        str | None, typer.Option(help="Upload evidence to this server, http://host:port")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="ZHIZHI_TOKEN", help="Bearer token for the server")
    ] = None,
    mqtt_username: Annotated[str | None, typer.Option(envvar="ZHIZHI_MQTT_USERNAME")] = None,
    mqtt_password: Annotated[str | None, typer.Option(envvar="ZHIZHI_MQTT_PASSWORD")] = None,
    mqtt_ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="ZHIZHI_MQTT_CA_FILE", help="mqtts://: the CA of the broker's certificate"
        ),
    ] = None,
    mqtt_cert_file: Annotated[
        Path | None,
        typer.Option(
            envvar="ZHIZHI_MQTT_CERT_FILE", help="mqtts://: this box's client certificate"
        ),
    ] = None,
    mqtt_key_file: Annotated[
        Path | None, typer.Option(envvar="ZHIZHI_MQTT_KEY_FILE", help="mqtts://: its private key")
    ] = None,
    keep_evidence: Annotated[
        bool, typer.Option(help="Keep local evidence files after upload")
    ] = False,
    metrics_listen: Annotated[
        str,
        typer.Option(
            help="Serve /metrics for Prometheus on HOST:PORT (0.0.0.0:9464 for a remote "
            "Prometheus; empty: off)"
        ),
    ] = "127.0.0.1:9464",
    detector_threads: Annotated[
        int, typer.Option(min=1, help="onnxruntime threads per inference in the detection service")
    ] = 1,
    detector_workers: Annotated[
        int, typer.Option(min=1, help="Inferences the detection service runs at once")
    ] = 2,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Detections of one model run together (batchable models)")
    ] = 4,
    report_every_s: Annotated[
        float, typer.Option(min=1, help="Seconds between load reports (status, /metrics, log)")
    ] = 10.0,
    loop: Annotated[
        bool, typer.Option(help="Play file sources in a loop, like cameras that never end")
    ] = True,
) -> None:
    """Production edge worker for the cameras of a site config: a process per camera and one
    detection service shared in order of need (docs/edge-runtime.md)."""
    setup_logging()
    site = load_config_or_fail(config)
    if server is not None and not token:
        fail("edge run: --server needs --token or ZHIZHI_TOKEN")
    from common.mqtt_url import TlsFiles, parse_mqtt_url
    from edge.runtime.worker import EdgeOptions, run_edge

    tls = None
    if mqtt is not None:
        try:
            broker = parse_mqtt_url(mqtt)
            if broker.tls or mqtt_ca_file or mqtt_cert_file:
                tls = TlsFiles(mqtt_ca_file, mqtt_cert_file, mqtt_key_file)
        except ValueError as error:
            fail(f"edge run: {error}")
        if tls is not None and not broker.tls:
            fail("edge run: --mqtt-ca-file/--mqtt-cert-file need an mqtts:// broker URL")
        for path in (mqtt_ca_file, mqtt_cert_file, mqtt_key_file):
            if path is not None and not path.is_file():
                fail(f"edge run: {path}: no such file")
    options = EdgeOptions(
        evidence_dir=evidence_dir,
        events_out=events_out,
        mqtt_url=mqtt,
        edge_id=edge_id,
        outbox_path=outbox,
        outbox_quota_gib=outbox_quota_gib,
        server_url=server,
        token=token,
        mqtt_username=mqtt_username,
        mqtt_password=mqtt_password,
        mqtt_tls=tls,
        keep_evidence=keep_evidence,
        metrics_listen=metrics_listen or None,
        detector_threads=detector_threads,
        detector_workers=detector_workers,
        max_batch=max_batch,
        report_every_s=report_every_s,
        loop_files=loop,
    )
    _run_guarded("edge run", lambda: run_edge(site, camera or [], options))


@bench_app.command("edge")
def bench_edge(
    clip: Annotated[Path | None, typer.Option(help="Video file to measure on")] = None,
    synthetic_s: Annotated[
        float | None,
        typer.Option(help="Instead of a clip: a quiet synthetic lane of this many seconds"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Site config")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera whose rules run")] = None,
    model: Annotated[str, typer.Option(help="Registry model for the detector-alone figure")] = (
        "yolov8n-640"
    ),
    write: Annotated[
        Path | None, typer.Option(help="Add the figures to this markdown file")
    ] = None,
    label: Annotated[str, typer.Option(help="Name of the scene in the report")] = "",
    repeat: Annotated[
        int, typer.Option(min=1, help="Play the clip this many times as one stream (memory)")
    ] = 1,
) -> None:
    """Decode alone, detector alone on every frame, and the whole pipeline, in frames/s."""
    setup_logging(quiet=True)
    from zhizhi.bench import bench_edge as run_bench

    site = load_config_or_fail(config) if config is not None else None
    if (clip is None) == (synthetic_s is None):
        fail("bench edge: give either --clip or --synthetic-s")
    with tempfile.TemporaryDirectory(prefix="zhizhi-bench-") as folder:
        if synthetic_s is not None:
            from edge.offline.synthetic import LaneScene, write_video

            clip = Path(folder) / "synthetic-lane.mp4"
            scene = LaneScene(seconds=synthetic_s, fps=25, drop_s=synthetic_s / 3)
            write_video(replace(scene, clear_s=synthetic_s * 5 / 6), str(clip))
        assert clip is not None  # noqa: S101
        video = clip
        result = _run_guarded("bench", lambda: run_bench(video, site, camera, model, label, repeat))
    print(result.markdown_row())  # type: ignore[attr-defined]
    if write is not None:
        result.append_to(write, shlex.join(sys.argv[1:]))  # type: ignore[attr-defined]


@bench_app.command("pile")
def bench_pile(
    clip: Annotated[Path | None, typer.Option(help="Video file to measure on")] = None,
    synthetic_s: Annotated[
        float | None,
        typer.Option(help="Instead of a clip: a synthetic 1280x720 lane where a pile is dumped"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Site config")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera whose rules run")] = None,
    model: Annotated[str, typer.Option(help="Registry detector (no --config)")] = "yolov8n-640",
    detect_fps: Annotated[float, typer.Option(help="Analysis rate (no --config)")] = 5.0,
    repeat: Annotated[int, typer.Option(min=1, help="Play the clip this many times")] = 1,
    label: Annotated[str, typer.Option(help="Name of the scene in the report")] = "",
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """CPU share of one core that a camera's garbage_pile rule needs, stage by stage."""
    setup_logging(quiet=True)
    from zhizhi.bench_pile import bench_pile as run_bench

    site = load_config_or_fail(config) if config is not None else None
    if (clip is None) == (synthetic_s is None):
        fail("bench pile: give either --clip or --synthetic-s")
    with tempfile.TemporaryDirectory(prefix="zhizhi-bench-") as folder:
        if synthetic_s is not None:
            from edge.offline.synthetic import LaneScene, write_video

            clip = Path(folder) / "synthetic-pile.mp4"
            scene = LaneScene(
                width=1280,
                height=720,
                fps=25,
                seconds=synthetic_s,
                drop_s=synthetic_s / 4,
                clear_s=None,
                growth_per_s=0.01,
                light_swing=0.2,
            )
            write_video(scene, str(clip))
        assert clip is not None  # noqa: S101
        video = clip
        result = _run_guarded(
            "bench pile",
            lambda: run_bench(video, label, model, detect_fps, repeat, site, camera),
        )
    print(result.markdown_row())  # type: ignore[attr-defined]
    if write is not None:
        result.append_to(write, shlex.join(sys.argv[1:]))  # type: ignore[attr-defined]


@bench_app.command("fall")
def bench_fall(
    clip: Annotated[Path, typer.Option(help="Video file to measure on")],
    config: Annotated[Path | None, typer.Option("--config", help="Site config")] = None,
    camera: Annotated[
        str | None, typer.Option(help="With --config: the camera whose person_fall rule runs")
    ] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Play the clip this many times")] = 1,
    label: Annotated[str, typer.Option(help="Name of the scene in the report")] = "",
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """CPU share of one core that a camera's person_fall rule (pose model included) needs."""
    setup_logging(quiet=True)
    from zhizhi.bench_fall import bench_fall as run_bench

    site = load_config_or_fail(config) if config is not None else None
    result = _run_guarded("bench fall", lambda: run_bench(clip, label, repeat, site, camera))
    print(result.markdown_row())  # type: ignore[attr-defined]
    if write is not None:
        result.append_to(write, shlex.join(sys.argv[1:]))  # type: ignore[attr-defined]


@bench_app.command("ingest")
def bench_ingest(
    db: Annotated[
        str,
        typer.Option(
            help="postgresql://... (a PostgreSQL server: the bench creates a temporary database "
            "there and drops it) or sqlite:///path (one server process)"
        ),
    ] = "postgresql://postgres@127.0.0.1:5432",
    servers: Annotated[int, typer.Option(help="`zhizhi server` processes to start (1 to 8)")] = 1,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="A broker of your own, mqtt://host:port (default: a private Mosquitto the "
            "bench starts); the bench's servers subscribe in a group of the run's own"
        ),
    ] = None,
    s3: Annotated[
        bool, typer.Option("--s3", help="Evidence into moto's S3 server, started by the bench")
    ] = False,
    s3_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Evidence into this S3-compatible store (MinIO, OSS, ...): a bucket of the "
            "run's own, removed at the end; keys from ZHIZHI_S3_ACCESS_KEY_ID and "
            "ZHIZHI_S3_SECRET_ACCESS_KEY"
        ),
    ] = None,
    snapshot_kb: Annotated[
        int, typer.Option(help="Snapshot uploaded with each event, kB (0: events alone)")
    ] = 143,
    snapshot_every: Annotated[
        int,
        typer.Option(
            min=1,
            help="One event in this many carries a snapshot (1: every event, the worst case; "
            "an alert's start carries one, its updates and end mostly none)",
        ),
    ] = 1,
    cameras: Annotated[
        int,
        typer.Option(
            help="Cameras the events are spread over (1: all join one incident, the worst case)"
        ),
    ] = 1,
    events: Annotated[int, typer.Option(min=100, help="Events for the throughput figure")] = 20000,
    rate: Annotated[float, typer.Option(help="Events/s for the latency figure")] = 200.0,
    seconds: Annotated[float, typer.Option(help="Length of the latency run")] = 10.0,
    window: Annotated[int, typer.Option(help="Unacknowledged events at most")] = 500,
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """Sustained events/s from MQTT (with a snapshot each) through N server processes into the
    database and the object store, and publish → stored latency; lost and doubled counted."""
    setup_logging(quiet=True)
    from zhizhi.bench_ingest import BenchRefused, IngestBench, IngestOptions
    from zhizhi.bench_ingest import bench_ingest as run_bench
    from zhizhi.local_services import ServiceFailed, ServiceUnavailable

    options = IngestOptions(
        db=db,
        servers=servers,
        events=events,
        rate=rate,
        seconds=seconds,
        window=window,
        snapshot_kb=snapshot_kb,
        snapshot_every=snapshot_every,
        cameras=cameras,
        s3=s3,
        s3_endpoint=s3_endpoint,
        mqtt=mqtt,
    )
    try:
        result: IngestBench = run_bench(options)
    except BenchRefused as error:
        fail("bench ingest: invalid options", error.problems)
    except (ServiceUnavailable, ServiceFailed, TimeoutError, OSError) as error:
        first, *log = str(error).splitlines() or [type(error).__name__]
        fail(f"bench ingest: {first}", log[-30:])
    print(IngestBench.HEADER)
    print(result.markdown_row())
    print(result.details())
    print(result.verdict())
    if write is not None:
        result.append_to(write, shlex.join(sys.argv[1:]))


@bench_app.command("privacy")
def bench_privacy(
    clip: Annotated[Path, typer.Option(help="Video file whose frames are redacted")],
    model: Annotated[str, typer.Option(help="Registry pose model that finds the faces")] = (
        "yolov8n-pose-640"
    ),
    repeat: Annotated[int, typer.Option(min=1, help="Snapshot runs; the median is shown")] = 7,
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """Cost of masking and face blurring per evidence file (1080p snapshot, 10 s 720p clip)."""
    setup_logging(quiet=True)
    from zhizhi.bench_privacy import bench_privacy as run_bench

    result = _run_guarded("bench privacy", lambda: run_bench(clip, model, repeat))
    print(result.markdown())  # type: ignore[attr-defined]
    if write is not None:
        result.append_to(write, shlex.join(sys.argv[1:]))  # type: ignore[attr-defined]


@bench_app.command("facade")
def bench_facade(
    synthetic_s: Annotated[
        float, typer.Option(help="Seconds of a synthetic 1920x1080 25-fps facade (0: none)")
    ] = 10.0,
    clip: Annotated[
        list[Path] | None, typer.Option(help="Real clip(s) to measure on (repeatable)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Site config")] = None,
    camera: Annotated[
        list[str] | None,
        typer.Option(
            help="With --config: the camera of each --clip, in order (its rule and zone); "
            "'' for the whole picture"
        ),
    ] = None,
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """falling_object facade analysis on every frame, on one core: ms/frame, real-time ratio."""
    setup_logging(quiet=True)
    from zhizhi.bench_facade import bench_facade as run_bench

    site = load_config_or_fail(config) if config is not None else None
    clips = list(clip or [])
    cameras: list[str | None] = [name or None for name in camera or []]
    if cameras and len(cameras) != len(clips):
        fail("bench facade: give one --camera per --clip, or none")
    pairs = list(zip(clips, cameras or [None] * len(clips), strict=True))
    result = _run_guarded("bench facade", lambda: run_bench(synthetic_s, pairs, site))
    print(result.markdown())  # type: ignore[attr-defined]
    if write is not None:
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        result.append_to(write, shlex.join(sys.argv[1:]), load)  # type: ignore[attr-defined]


@bench_app.command("clips")
def bench_clips(
    clips: Annotated[Path, typer.Option(help="The shared clips (CLIPS.md)")] = Path(
        "../shared/clips"
    ),
    out: Annotated[Path | None, typer.Option(help="Where to write them")] = None,
    size: Annotated[str, typer.Option(help="Largest picture, WIDTHxHEIGHT")] = "1280x720",
) -> None:
    """Write the footage the box benchmarks play (H.264, 720p; lanes with a bag left)."""
    setup_logging(quiet=True)
    from zhizhi.bench_clips import DEFAULT_OUT, prepare

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        fail(f"bench clips: --size must be WIDTHxHEIGHT, got {size!r}")
    folder = out or DEFAULT_OUT
    written = _run_guarded("bench clips", lambda: prepare(clips, folder, (width, height)))
    for path in written:  # type: ignore[attr-defined]
        print(path)
    print(f"export ZHIZHI_BENCH_CLIPS={folder}")


def _bench_clips_env() -> None:
    from zhizhi.bench_clips import DEFAULT_OUT

    os.environ.setdefault("ZHIZHI_BENCH_CLIPS", str(DEFAULT_OUT))


FACES_HELP = (
    "Set evidence_faces on every rule: keep measures the cameras without blurring each "
    "alert's clip (a bench loop alerts hundreds of times a site's rate)"
)


@bench_app.command("box")
def bench_box(
    config: ConfigOption,
    seconds: Annotated[float, typer.Option(min=10, help="Seconds to run the box live")] = 90.0,
    camera: Annotated[
        list[str] | None, typer.Option(help="Only these cameras (repeat the option)")
    ] = None,
    server: Annotated[
        bool, typer.Option(help="Deliver to an embedded broker and server; measure latency")
    ] = False,
    faces: Annotated[EvidenceFaces | None, typer.Option(help=FACES_HELP)] = None,
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """The box live on a site's cameras (file sources looped at their pace) against replay:
    alerts found, missed and unexpected per camera, frames analysed and dropped, coverage,
    CPU; with --server, the alert latency to the server's store."""
    setup_logging(quiet=True)
    _bench_clips_env()
    from zhizhi.bench_box import run_box_bench

    site = load_config_or_fail(config)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    result = _run_guarded(
        "bench box",
        lambda: run_box_bench(site, camera or [], seconds, server=server, faces=faces),
    )
    print(result.markdown())  # type: ignore[attr-defined]
    if write is not None:
        result.append_to(write, shlex.join(sys.argv[1:]), load)  # type: ignore[attr-defined]


@bench_app.command("capacity")
def bench_capacity(
    config: Annotated[
        Path, typer.Option("--config", help="A site config with one camera (configs/bench/kind-*)")
    ],
    model: Annotated[
        str | None, typer.Option(help="Registry detector to run (default: the config's)")
    ] = None,
    seconds: Annotated[float, typer.Option(min=10, help="Seconds per try")] = 60.0,
    start: Annotated[int, typer.Option(min=1, help="Cameras in the first try")] = 1,
    most: Annotated[int, typer.Option(min=1, help="Cameras in the last try")] = 24,
    step: Annotated[
        int, typer.Option(min=1, help="Cameras added per try (then one by one at the limit)")
    ] = 1,
    faces: Annotated[EvidenceFaces | None, typer.Option(help=FACES_HELP)] = None,
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """How many copies of one camera a box runs with replay quality: `start`, `start + step`,
    ... until a try misses an alert, raises another or holds a rule's judgement."""
    setup_logging(quiet=True)
    _bench_clips_env()
    from zhizhi.bench_box import BoxResult, capacity, capacity_markdown

    load_config_or_fail(config)  # the template itself must be valid
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())

    def on_try(count: int, result: object) -> None:
        print(f"{count} camera(s): replay quality {result.replay_quality}")  # type: ignore[attr-defined]

    found: tuple[int, list[tuple[int, BoxResult]]] = _run_guarded(  # type: ignore[assignment]
        "bench capacity",
        lambda: capacity(config, model, seconds, start, most, on_try, step, faces=faces),
    )
    best, tries = found
    text = capacity_markdown(config.stem, model or "the config's model", best, tries)
    print(text)
    if write is not None:
        with write.open("a", encoding="utf-8") as stream:
            stream.write(
                f"\n#### {config.stem}, {model or 'config model'} (load before {load})\n\n"
                f"```\nzhizhi {shlex.join(sys.argv[1:])}\n```\n\n{text}\n"
            )


@bench_app.command("int8")
def bench_int8(
    clip: Annotated[
        list[Path], typer.Option(help="Clip, or folder of clips, to sample (repeatable)")
    ],
    model: Annotated[str, typer.Option(help="Registry float model to quantise")] = "yolov8n-640",
    teacher: Annotated[
        Path | None,
        typer.Option(help="Ultralytics .pt drawing reference labels [yolo11n.pt]"),
    ] = None,
    teacher_imgsz: Annotated[int, typer.Option(help="Image size of the teacher")] = 1280,
    frames: Annotated[int, typer.Option(min=1, help="Evaluation frames")] = 64,
    calib_frames: Annotated[int, typer.Option(min=1, help="Calibration frames")] = 32,
    runs: Annotated[int, typer.Option(min=3, help="Timed detect() calls per model")] = 60,
    write: Annotated[Path | None, typer.Option(help="Add the figures to this file")] = None,
) -> None:
    """INT8 vs float on this CPU: latency (1 thread, default), mAP50, the decide_int8 verdict."""
    setup_logging(quiet=True)
    from edge.runtime.models import model_search_dirs
    from training.bench_int8 import bench_int8 as run_bench
    from training.bench_int8 import video_files

    found = [d / "yolo11n.pt" for d in model_search_dirs() if (d / "yolo11n.pt").is_file()]
    weights = teacher or (found[0] if found else None)
    if weights is None:
        fail("bench int8: no yolo11n.pt in the model folders; give --teacher")
    videos = video_files(clip)
    try:
        result = _run_guarded(
            "bench int8",
            lambda: run_bench(
                model,
                videos,
                weights,
                eval_frames=frames,
                calib_frames=calib_frames,
                teacher_imgsz=teacher_imgsz,
                runs=runs,
            ),
        )
    except ValueError as error:
        fail(f"bench int8: {error}")
    print(result.markdown())  # type: ignore[attr-defined]
    if write is not None:
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        result.append_to(write, shlex.join(sys.argv[1:]), load)  # type: ignore[attr-defined]


@models_app.command("list")
def models_list() -> None:
    """The registry's models and whether their files are found and verified."""
    from edge.runtime.models import load_registry, model_status

    for name, status in model_status(load_registry()).items():
        print(f"{name}: {status}")


@app.command("server")
def server(
    db: Annotated[
        str | None,
        typer.Option(
            help="sqlite:///path or postgresql://... [env ZHIZHI_DB_URL; default "
            "sqlite:///./zhizhi.db]"
        ),
    ] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(help="Broker, mqtt://host:port or mqtts://host:8883 [env ZHIZHI_MQTT_URL]"),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to serve on [ZHIZHI_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to serve on [ZHIZHI_PORT]")] = None,
    media_dir: Annotated[
        Path | None, typer.Option(help="Where evidence files are kept [ZHIZHI_MEDIA_DIR]")
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Stable MQTT client id of this server process, e.g. the replica's ordinal "
            "[ZHIZHI_MQTT_CLIENT_ID; default zhizhi-server-1]"
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="MQTT 5 shared-subscription group, the same for all processes "
            "[ZHIZHI_MQTT_GROUP; default zhizhi-server]"
        ),
    ] = None,
    session_expiry_s: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seconds the broker keeps this process's session while it is away "
            "[ZHIZHI_MQTT_SESSION_EXPIRY_S; default 3600]",
        ),
    ] = None,
    member_grace_s: Annotated[
        float | None,
        typer.Option(
            help="A server process without a heartbeat this long is removed from the group "
            "[ZHIZHI_MEMBER_GRACE_S; default 120]"
        ),
    ] = None,
    member_heartbeat_s: Annotated[
        float | None,
        typer.Option(help="Heartbeat period [ZHIZHI_MEMBER_HEARTBEAT_S; default 10]"),
    ] = None,
    mqtt_ca_file: Annotated[
        Path | None, typer.Option(help="mqtts://: the broker's CA [ZHIZHI_MQTT_CA_FILE]")
    ] = None,
    mqtt_cert_file: Annotated[
        Path | None, typer.Option(help="mqtts://: client certificate [ZHIZHI_MQTT_CERT_FILE]")
    ] = None,
    mqtt_key_file: Annotated[
        Path | None, typer.Option(help="mqtts://: client key [ZHIZHI_MQTT_KEY_FILE]")
    ] = None,
    mqtt_username: Annotated[str | None, typer.Option(envvar="ZHIZHI_MQTT_USERNAME")] = None,
    mqtt_password: Annotated[str | None, typer.Option(envvar="ZHIZHI_MQTT_PASSWORD")] = None,
    dispatch: Annotated[
        Path | None,
        typer.Option(
            help="Dispatch rules, deadlines and webhooks (YAML; docs/command-center.md) "
            "[ZHIZHI_DISPATCH_FILE]"
        ),
    ] = None,
    group_window_s: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Group repeated alerts of a rule and zone this long [ZHIZHI_GROUP_WINDOW_S; "
            "default 300]",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies whose X-Forwarded-For is believed (IPs or networks, comma-separated; "
            "default: none) [ZHIZHI_FORWARDED_ALLOW_IPS]",
        ),
    ] = None,
    api_docs: Annotated[
        bool, typer.Option(help="Serve /openapi.json to admins [ZHIZHI_API_DOCS]")
    ] = False,
    metrics_public: Annotated[
        bool,
        typer.Option(
            help="Serve /metrics without a token (default: needs one) [ZHIZHI_METRICS_PUBLIC]"
        ),
    ] = False,
) -> None:
    """The central server: REST API, dashboard, MQTT ingestion, evidence store.

    Every setting also comes from its ZHIZHI_* environment variable (server/settings.py
    ENV_NAMES; containers are configured so); an option given on the command line wins."""
    setup_logging()
    from pydantic import ValidationError

    from server.dispatch import DispatchConfigError, load_dispatch_config
    from server.settings import ServerSettings

    given = {
        "db_url": db,
        "mqtt_url": mqtt,
        "host": host,
        "port": port,
        "media_dir": media_dir,
        "mqtt_client_id": client_id,
        "mqtt_group": group,
        "mqtt_session_expiry_s": session_expiry_s,
        "member_grace_s": member_grace_s,
        "member_heartbeat_s": member_heartbeat_s,
        "mqtt_ca_file": mqtt_ca_file,
        "mqtt_cert_file": mqtt_cert_file,
        "mqtt_key_file": mqtt_key_file,
        "dispatch_file": dispatch,
        "group_window_s": group_window_s,
        "forwarded_allow_ips": forwarded_allow_ips,
        "api_docs": api_docs or None,  # a flag left off leaves the environment's value
        "metrics_public": metrics_public or None,
    }
    try:
        settings = ServerSettings.from_env(os.environ, **given)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        fail(f"server: {where + ': ' if where else ''}{problem['msg']}")
    if settings.dispatch_file is not None:
        try:  # before anything starts: every problem at once
            load_dispatch_config(settings.dispatch_file)
        except DispatchConfigError as error:
            count = len(error.problems)
            fail(f"{error.file}: invalid dispatch file ({count} problem(s))", error.problems)
    from sqlalchemy.exc import OperationalError

    from server.main import build_server, run_server

    try:
        runtime = build_server(settings, mqtt_username=mqtt_username, mqtt_password=mqtt_password)
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0]
        fail(f"server: cannot reach the database {settings.db_url}: {reason}")
    except DispatchConfigError as error:
        count = len(error.problems)
        fail(f"{error.file}: invalid dispatch file ({count} problem(s))", error.problems)
    run_server(runtime)


@token_app.command("create")
def token_create(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    role: Annotated[str, typer.Option(help="admin | operator | viewer | edge")],
    name: Annotated[str, typer.Option(help="Who or what the token is for")] = "",
    sites: Annotated[
        str,
        typer.Option(help="Comma-separated sites it acts for (an edge box: its own); * = all"),
    ] = "*",
    days: Annotated[
        float, typer.Option(help="Days until it lapses (every token does; at most 3650)")
    ] = 90.0,
) -> None:
    """Print a new API bearer token for that role (only its hash is stored)."""
    from sqlalchemy.exc import OperationalError

    from server.auth import MAX_TOKEN_DAYS, ROLES, issue_token

    if role not in ROLES:
        fail(f"token create: role must be one of {', '.join(ROLES)}, got {role!r}")
    scope = [site.strip() for site in sites.split(",") if site.strip()]
    if not scope:
        fail("token create: --sites needs at least one site, or *")
    if not 0 < days <= MAX_TOKEN_DAYS:
        fail(f"token create: --days must be more than 0 and at most {MAX_TOKEN_DAYS:g}")
    try:
        print(issue_token(db, role, name or role, scope, days=days))
    except OperationalError as error:
        fail(f"token create: cannot reach the database {db}: {str(error.orig).strip()}")


@token_app.command("list")
def token_list(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    sessions: Annotated[
        bool, typer.Option("--sessions", help="Also the users' login sessions")
    ] = False,
) -> None:
    """Every API token: id, state, role, name, sites, expiry (never the token itself)."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import OperationalError

    from server.auth import tokens_of

    try:
        tokens = tokens_of(db, with_sessions=sessions)
    except OperationalError as error:
        fail(f"token list: cannot reach the database {db}: {str(error.orig).strip()}")
    now = datetime.now(UTC)
    print("id\tstate\trole\tname\tsites\texpires")
    for token in tokens:
        sites = "*" if token.sites is None else ",".join(token.sites)
        expires = token.expires_at.strftime("%Y-%m-%d %H:%M") if token.expires_at else "-"
        name = token.name if token.user_id is None else f"{token.name} (user {token.user_id})"
        print(f"{token.id}\t{token.state(now)}\t{token.role}\t{name}\t{sites}\t{expires}")


@token_app.command("revoke")
def token_revoke(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    token_id: Annotated[int, typer.Argument(help="The id `zhizhi token list` shows")],
) -> None:
    """Revoke a token now (a live stream using it ends at its next check)."""
    from sqlalchemy.exc import OperationalError

    from server.auth import revoke_by_id

    try:
        revoked = revoke_by_id(db, token_id)
    except OperationalError as error:
        fail(f"token revoke: cannot reach the database {db}: {str(error.orig).strip()}")
    if not revoked:
        fail(f"token revoke: no live token with id {token_id}")
    print(f"revoked token {token_id}")


@user_app.command("create")
def user_create(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    username: Annotated[str, typer.Option(help="Login name")],
    role: Annotated[str, typer.Option(help="admin | operator | field | viewer")],
    sites: Annotated[str, typer.Option(help="Comma-separated site ids, or * for every site")],
    display_name: Annotated[str | None, typer.Option(help="Name shown in the dashboard")] = None,
    locale: Annotated[str, typer.Option(help="zh-CN | en")] = "zh-CN",
    team: Annotated[
        str | None,
        typer.Option(
            help="A field worker's team (e.g. property_management): 我的工单 lists its orders"
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Add a command-center user (password hashed with argon2id)."""
    import getpass

    from sqlalchemy.exc import OperationalError

    from server.users import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            fail("user create: the two passwords differ")
    site_list = [site.strip() for site in sites.split(",") if site.strip()]
    try:
        user = add_user(
            db,
            username=username,
            password=password,
            role=role,
            sites=site_list,
            display_name=display_name,
            locale=locale,
            team=team,
        )
    except ValueError as error:
        fail(f"user create: {error}")
    except OperationalError as error:
        fail(f"user create: cannot reach the database {db}: {str(error.orig).strip()}")
    print(f"created {user.role} user {user.username} (sites: {','.join(user.sites)})")


def _read_password(action: str, from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        fail(f"{action}: the two passwords differ")
    return password


def _change_user(action: str, db: str, username: str, **change: object) -> int:
    from sqlalchemy.exc import OperationalError

    from server.users import change_user

    try:
        return change_user(db, username, **change)  # type: ignore[arg-type]
    except (LookupError, ValueError) as error:
        fail(f"{action}: {error.args[0] if error.args else error}")
    except OperationalError as error:
        fail(f"{action}: cannot reach the database {db}: {str(error.orig).strip()}")


@user_app.command("disable")
def user_disable(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    username: Annotated[str, typer.Option(help="Login name")],
) -> None:
    """Disable a user: no more logins, and its open sessions end now."""
    revoked = _change_user("user disable", db, username, disable=True)
    print(f"disabled user {username} ({revoked} session(s) ended)")


@user_app.command("enable")
def user_enable(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    username: Annotated[str, typer.Option(help="Login name")],
) -> None:
    """Let a disabled user log in again."""
    _change_user("user enable", db, username, disable=False)
    print(f"enabled user {username}")


@user_app.command("passwd")
def user_passwd(
    db: Annotated[str, typer.Option(help="The server's database URL")],
    username: Annotated[str, typer.Option(help="Login name")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Set a user's password (argon2id); every open session of the user ends."""
    password = _read_password("user passwd", password_stdin)
    revoked = _change_user("user passwd", db, username, password=password)
    print(f"new password for {username} ({revoked} session(s) ended)")


@app.command("demo")
def demo(
    seconds: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: a free one)")] = None,
) -> None:
    """The whole system on one machine with no outside services: embedded broker, server on
    SQLite, edge worker on built-in scenes; prints the server URL and the login to use."""
    setup_logging(quiet=True)
    from zhizhi.demo import run_demo

    _run_guarded("demo", lambda: run_demo(seconds=seconds, port=port))


def main() -> None:
    # OpenCV's and FFmpeg's own log lines ("moov atom not found", "can't capture by name")
    # would come before our one-line reason; the edge reports unreadable video itself.
    # Set OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL to see them.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    app()


if __name__ == "__main__":
    main()
