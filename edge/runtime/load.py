"""How the box keeps up, from the counters its processes report (pure: no I/O, time passed in).

Each camera process reports cumulative counters (`CameraCounters`) every couple of seconds; the
supervisor keeps the previous report of each camera and turns two reports into the figures of
the window between them (`camera_load`): frames read, analysed and dropped per second, how far
behind live the analysis runs, how long detections waited, each rule's coverage (the looks it
got against the looks it needs), and the problems, each with a stable code the dashboard
translates. A camera is `overloaded` when a rule lost what it needs (frames an every-frame rule
needed were dropped, a zone rule held its judgement, the analysis fell seconds behind live) and
`degraded` when the analysis ran below its configured rate but the rules still had enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.events import BoxLoad, CameraLoad, DetectorLoad, LoadProblem, LoadState, RuleCoverage

LAG_LIMIT_S = 2.0  # an analysis further behind live than this is overloaded
DEGRADED_COVERAGE = 0.9  # a lane that got less than this share of its frames is degraded
DETECTOR_WAIT_LIMIT_S = 1.0  # a p95 wait for the detector above this is a problem
FLOOD_FPS = 60.0  # a camera sending more frames a second than this floods the box
READ_SHARE = 0.85  # a camera read at less than this share of its own frame rate outruns the box


@dataclass(frozen=True, slots=True)
class LaneCounters:
    """One lane of a camera, cumulative since the camera's process started."""

    rule_ids: tuple[str, ...]
    need_fps: float | None  # None: every frame the camera sends
    offered: int = 0  # frames handed to the lane
    processed: int = 0
    dropped: int = 0  # handed over but dropped before the lane took them (it was behind)
    busy_s: float = 0.0
    starved: int = 0  # analyses on which the lane's rules held their judgement
    max_gap_s: float = 0.0  # the longest time between two processed frames since the last report
    lag_s: float = 0.0  # wall time from reading the last processed frame to processing it


@dataclass(frozen=True, slots=True)
class CameraCounters:
    """One camera process, cumulative since it started; `mono_s` is when it was taken."""

    mono_s: float
    started_mono_s: float = 0.0  # when the camera's process started counting
    frames_read: int = 0
    frames_skipped: int = 0  # read but wanted by no lane (never converted)
    nominal_fps: float | None = None  # what the camera says it sends
    cpu_s: float = 0.0  # user + system time of the camera's process
    rss_mb: float = 0.0
    detector_waits_s: tuple[float, ...] = ()  # each answered request since the last report
    detections_missed: int = 0  # looks the shared detector declined
    lanes: Mapping[str, LaneCounters] = field(default_factory=dict)


def _rate(now: int | float, before: int | float, window_s: float) -> float:
    return max(0.0, float(now) - float(before)) / window_s if window_s > 0 else 0.0


def _p95(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def camera_load(
    now: CameraCounters,
    before: CameraCounters | None,
    *,
    target_analysis_fps: float | None,
    restarts: int = 0,
    state_override: LoadState | None = None,
) -> CameraLoad:
    """The window between two reports of one camera (or since its start) as `CameraLoad`."""
    # counters are cumulative since the process started: without an earlier report, the
    # window is the process's whole life
    start = before or CameraCounters(mono_s=min(now.started_mono_s, now.mono_s - 1e-3))
    window = max(1e-6, now.mono_s - start.mono_s)
    camera_fps = _rate(now.frames_read, start.frames_read, window)
    coverage: dict[str, RuleCoverage] = {}
    problems: list[LoadProblem] = []
    frame_rule_fps: float | None = None
    analysis_fps: float | None = None
    dropped = 0.0
    lag = 0.0
    worst_state: LoadState = "ok"
    for name, lane in now.lanes.items():
        was = start.lanes.get(name, LaneCounters(lane.rule_ids, lane.need_fps))
        processed = _rate(lane.processed, was.processed, window)
        lane_dropped = _rate(lane.dropped, was.dropped, window)
        starved = lane.starved - was.starved
        dropped += lane_dropped
        lag = max(lag, lane.lag_s)
        need = lane.need_fps if lane.need_fps is not None else camera_fps
        need = min(need, camera_fps) if camera_fps > 0 else need
        got = processed
        share = min(1.0, got / need) if need > 0 else 1.0
        for rule_id in lane.rule_ids:
            coverage[rule_id] = RuleCoverage(
                need_fps=round(need, 2),
                got_fps=round(got, 2),
                coverage=round(share, 3),
                max_gap_s=round(lane.max_gap_s, 3),
                holding=starved > 0,
            )
        if name.startswith("frame:"):
            frame_rule_fps = min(frame_rule_fps, processed) if frame_rule_fps else processed
        elif name == "zones":
            analysis_fps = processed
        if not lane.rule_ids:
            continue
        if lane.dropped > was.dropped and lane.need_fps is None:
            problems.append(
                LoadProblem(
                    code="frame_rules_behind",
                    params={"lane": name, "dropped": lane.dropped - was.dropped},
                    detail=f"{name}: {lane.dropped - was.dropped} consecutive frames dropped",
                )
            )
            worst_state = "overloaded"
        if starved > 0:
            problems.append(
                LoadProblem(
                    code="analysis_starved",
                    params={"lane": name, "analyses": starved, "rules": ",".join(lane.rule_ids)},
                    detail=f"{name}: rules held their judgement on {starved} analyses",
                )
            )
            worst_state = "overloaded"
        elif share < DEGRADED_COVERAGE and need > 0:
            problems.append(
                LoadProblem(
                    code="frames_dropped",
                    params={"lane": name, "got_fps": round(got, 2), "need_fps": round(need, 2)},
                    detail=f"{name}: {got:.1f} of {need:.1f} analyses a second",
                )
            )
            if worst_state == "ok":
                worst_state = "degraded"
    if lag > LAG_LIMIT_S:
        problems.append(
            LoadProblem(
                code="lagging", params={"lag_s": round(lag, 2)}, detail=f"{lag:.1f} s behind"
            )
        )
        worst_state = "overloaded"
    wait = _p95(now.detector_waits_s)
    if wait > DETECTOR_WAIT_LIMIT_S:
        problems.append(
            LoadProblem(
                code="detector_slow",
                params={"wait_ms": round(wait * 1000)},
                detail=f"detections waited {wait * 1000:.0f} ms (p95)",
            )
        )
        if worst_state == "ok":
            worst_state = "degraded"
    nominal = now.nominal_fps
    behind = nominal is not None and before is not None and camera_fps < READ_SHARE * nominal
    if camera_fps > FLOOD_FPS or behind:
        sent = nominal if nominal is not None else camera_fps
        problems.append(
            LoadProblem(
                code="source_flooding",
                params={"fps": round(sent, 1), "read_fps": round(camera_fps, 1)},
                detail=f"the camera sends {sent:.0f} frames a second, the box reads "
                f"{camera_fps:.0f}",
            )
        )
        if behind and worst_state == "ok":
            worst_state = "degraded"
    if restarts and before is None:
        problems.append(
            LoadProblem(code="restarted", params={"restarts": restarts}, detail="worker restarted")
        )
    detections = sum(1 for _ in now.detector_waits_s)
    return CameraLoad(
        window_s=round(window, 2),
        state=state_override or worst_state,
        camera_fps=round(camera_fps, 2),
        frame_rule_fps=None if frame_rule_fps is None else round(frame_rule_fps, 2),
        analysis_fps=None if analysis_fps is None else round(analysis_fps, 2),
        target_analysis_fps=target_analysis_fps,
        detection_fps=round(detections / window, 2),
        dropped_fps=round(dropped, 2),
        lag_s=round(lag, 3),
        detector_wait_ms=round(wait * 1000, 1),
        cpu=round(max(0.0, now.cpu_s - start.cpu_s) / window, 3),
        restarts=restarts,
        coverage=coverage,
        problems=problems,
    )


def box_load(
    window_s: float,
    cores: int,
    cpu: float,
    process_cpu: float,
    memory_mb: float,
    memory_available_mb: float | None,
    load1: float | None,
    detector: DetectorLoad | None,
    cameras: Mapping[str, CameraLoad],
) -> BoxLoad:
    """The box as a whole: overloaded when any camera is."""
    return BoxLoad(
        window_s=round(window_s, 2),
        cores=cores,
        cpu=round(min(1.0, max(0.0, cpu)), 3),
        process_cpu=round(process_cpu, 3),
        memory_mb=round(memory_mb, 1),
        memory_available_mb=None if memory_available_mb is None else round(memory_available_mb),
        load1=None if load1 is None else round(load1, 2),
        detector=detector or DetectorLoad(),
        overloaded=any(load.state == "overloaded" for load in cameras.values()),
    )


def summary_line(cameras: Mapping[str, CameraLoad], box: BoxLoad) -> str:
    """One log line for the whole box: each camera's rates and state, the box's CPU."""
    parts = []
    for camera_id, load in sorted(cameras.items()):
        rate = load.frame_rule_fps if load.frame_rule_fps is not None else load.analysis_fps
        analysed = f"{rate:.1f}" if rate is not None else "-"
        parts.append(
            f"{camera_id}={load.state}({load.camera_fps:.0f}in/{analysed}an/"
            f"{load.dropped_fps:.1f}drop det={load.detection_fps:.1f} "
            f"lag={load.lag_s:.1f}s cpu={load.cpu * 100:.0f}%)"
        )
    detector = box.detector
    needs = " ".join(
        f"{need}:{detector.runs_by_need.get(need, 0)}/{wait:.0f}ms"
        for need, wait in sorted(detector.wait_p95_ms_by_need.items())
    )
    return (
        f"box cpu={box.cpu * 100:.0f}% mem={box.memory_mb:.0f}MB "
        f"detector busy={detector.busy * 100:.0f}% wait95={detector.wait_p95_ms:.0f}ms "
        f"queue={detector.queue} shed={detector.shed} [{needs}] | " + " ".join(parts)
    )
