"""The recorder: rule decisions (`Finding`s) in, event messages with their evidence out.

For each finding it gives the message its id and sequence number (edge.delivery.sequencer) and
writes the redacted snapshot, and a garbage pile's enforcement pictures. The alert (`new`) leaves
at once with them: the operator never waits for the heaviest evidence. Its clip follows in the
situation's next message, an `update` (`details.update_reason: "clip"`) made at the same moment
(so its sequence number follows the alert's) and sent once the clip is cut and redacted: a
frame rule's from the dense pre-event buffer once its post-roll (`clip_post_s` after the alert)
has been seen, a zone rule's from the sparse frame history at once. Later messages of that
situation wait behind it, so every situation's messages leave in the order they were made;
other situations' messages do not wait. Evidence that cannot be made (a face finder that fails,
a full disk) is left out and the message still goes: nothing unredacted is ever written.

Replay calls it inline (`add`, then `release` with each frame's time); the live box runs it on
a thread of its own, so that encoding a clip never holds up the analysis of the next frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import cv2

from common.config import CameraConfig, SiteConfig
from common.events import Event, Evidence, ModelInfo
from edge.analysis.lanes import Finding
from edge.analysis.stats import PipelineStats
from edge.delivery.sequencer import EventSequencer
from edge.evidence.clips import CONTENT_TYPE as CLIP_TYPE
from edge.evidence.clips import ClipError, decode_jpeg, encode_mp4
from edge.evidence.history import FrameHistory, PastFrame
from edge.evidence.privacy import RedactionError, RedactionRecord, Redactor
from edge.evidence.store import Annotation, EvidenceStore, annotate, encode_jpeg
from edge.rules.base import RuleOutput
from edge.types import Box, Frame

logger = logging.getLogger(__name__)

ZONE_CLIP_PRE_S = 8.0  # a zone rule's clip: from this long before the onset...
ZONE_CLIP_POST_S = 8.0  # ...to this long after it (or the alert, if sooner)


CLIP_UPDATE = "clip"  # `details.update_reason` of the message that brings an alert's clip


@dataclass(slots=True)
class _Held:
    """A message waiting for its clip (or behind one of its situation that is)."""

    event: Event
    due_s: float
    clip: tuple[float, float] | None = None  # stream seconds the clip covers
    history: FrameHistory | None = None  # where its frames are cut from
    cutting: bool = False  # its clip is being made on the clip thread (live)


class Recorder:
    """Findings of one camera's lanes → event messages, in the order they were made. Not
    thread-safe: one thread calls `add` and `release` (the frame histories it reads are)."""

    def __init__(
        self,
        site: SiteConfig,
        camera: CameraConfig,
        evidence: EvidenceStore | None,
        redactor: Redactor,
        sequencer: EventSequencer,
        stats: PipelineStats,
        *,
        clip_windows: dict[str, tuple[float, float]],
        zone_history: FrameHistory | None,
        recent: FrameHistory | None,
        pile_rules: set[str],
        model_info: Callable[[], ModelInfo | None] | None = None,
        wall_clock: Callable[[Frame], datetime] | None = None,
        clip_redactor: Redactor | None = None,
    ) -> None:
        self.camera = camera
        self._clip_redactor = clip_redactor or redactor  # its faces are found at low priority
        # live: clips are cut on a thread of their own (`cut_clips_with`), so that a clip being
        # redacted never holds up the next alert; replay cuts them here, in order
        self._clip_runner: Callable[[Callable[[], None]], None] | None = None
        self._lock = threading.Lock()
        self.evidence = evidence
        self._redactor = redactor
        self._events = sequencer
        self._stats = stats
        self._clip_windows = clip_windows
        self._history = zone_history
        self._recent = recent
        self._pile_rules = pile_rules
        self._model_info = model_info
        self._wall_clock = wall_clock or (lambda frame: datetime.fromtimestamp(frame.wall_s, UTC))
        self._zones = {zone.id: list(zone.polygon) for zone in camera.zones}
        self._blur_faces = {rule.id: rule.evidence_faces == "blur" for rule in camera.rules}
        self._held: deque[_Held] = deque()
        self._pile_onsets: dict[str, tuple[bytes, RedactionRecord]] = {}  # 'appeared' pictures
        del site  # the sequencer carries the site id

    def cut_clips_with(self, runner: Callable[[Callable[[], None]], None]) -> None:
        """Hand the cutting of clips to `runner` (which runs each job on another thread); the
        message it completes leaves at the next `release` after it is done."""
        self._clip_runner = runner

    @property
    def waiting(self) -> int:
        """Messages held for a clip's post-roll (or behind one)."""
        with self._lock:
            return len(self._held)

    def add(self, findings: Sequence[Finding]) -> None:
        """Make the messages of these findings (pictures written); they leave by `release`,
        each alert with the `update` that will bring its clip right behind it."""
        for finding in findings:
            for event in self._events_of([finding]):
                plan = self._clip_plan(event)
                follow_up = None
                if plan is not None:
                    history, window, due = plan
                    follow_up = _Held(self._follow_up(finding, event), due, window, history)
                with self._lock:
                    self._held.append(_Held(event, float("-inf")))
                    if follow_up is not None:
                        self._held.append(follow_up)

    def release(self, now_s: float) -> list[Event]:
        """The messages that may leave once the stream has reached `now_s`: a clip's `update`
        once its post-roll has been seen and its clip is cut, every other message at once
        unless an earlier one of its situation is still held."""
        out: list[Event] = []
        keep: deque[_Held] = deque()
        blocked: set[str] = set()
        with self._lock:
            held_now = list(self._held)
        for held in held_now:
            event = held.event
            if event.event_id in blocked or held.due_s > now_s or held.cutting:
                blocked.add(event.event_id)
                keep.append(held)
                continue
            if held.clip is not None and held.history is not None:
                if self._clip_runner is not None:
                    held.cutting = True
                    self._clip_runner(self._cutter(held))
                    blocked.add(event.event_id)
                    keep.append(held)
                    continue
                event = self._cut(held)
            out.append(event)
        with self._lock:
            added = list(self._held)[len(held_now) :]  # made meanwhile (none in replay)
            self._held = deque([*keep, *added])
        self._stats.events += len(out)
        return [_with_privacy(event) for event in out]

    def _cut(self, held: _Held) -> Event:
        assert held.clip is not None and held.history is not None  # noqa: S101
        started = time.perf_counter()
        event = self._with_clip(held.event, held.history.between(*held.clip))
        self._stats.add_seconds("evidence", time.perf_counter() - started)
        return event

    def _cutter(self, held: _Held) -> Callable[[], None]:
        def job() -> None:
            try:
                event = self._cut(held)
            except Exception:  # the clip thread's boundary: the message goes without it
                logger.exception("camera %s: the clip could not be cut", self.camera.id)
                event = held.event
            with self._lock:
                held.event, held.clip, held.cutting = event, None, False

        return job

    def _clip_plan(self, event: Event) -> tuple[FrameHistory, tuple[float, float], float] | None:
        """Where an alert's clip comes from, the stream seconds it covers, and from when it can
        be cut; None when the message gets no clip."""
        if event.state != "new" or self.evidence is None:
            return None
        window = self._clip_windows.get(event.rule_id)
        if window is not None:
            if self._recent is None:
                return None
            end = event.pts_s + window[1]
            return self._recent, (event.onset_pts_s - window[0], end), end
        if self._history is None:
            return None
        start = event.onset_pts_s - ZONE_CLIP_PRE_S
        end = min(event.onset_pts_s + ZONE_CLIP_POST_S, event.pts_s)
        return self._history, (start, end), float("-inf")

    def _follow_up(self, finding: Finding, alert: Event) -> Event:
        """The `update` that brings the alert's clip: the alert's decision again, numbered
        now (right after the alert), its clip added when it is cut."""
        output = replace(
            finding.output,
            state="update",
            details={**finding.output.details, "update_reason": CLIP_UPDATE},
        )
        ids = self._events.next_id(output)
        assert ids[0] == alert.event_id  # noqa: S101 - the alert opened this situation
        return self._events.make(output, self._wall_clock(finding.frame), [], ids)

    def finish(self, timeout_s: float = 60.0) -> list[Event]:
        """The stream ended: everything held leaves now, clips cut from what was seen (live:
        waiting up to `timeout_s` for the clips being cut)."""
        out = self.release(float("inf"))
        deadline = time.monotonic() + timeout_s
        while self.waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            out += self.release(float("inf"))
        return out

    # -- making events -------------------------------------------------------------------------

    def _events_of(self, findings: Sequence[Finding]) -> list[Event]:
        """The findings as event messages; one that cannot become a valid message (a rule's
        bug) is reported and dropped, and the camera carries on."""
        events = []
        for finding in findings:
            try:
                events.append(self._to_event(finding))
            except Exception:  # the boundary between a rule's decision and the camera
                self._stats.rule_errors += 1
                logger.exception(
                    "camera %s: rule %s: output %s at %.2fs could not become an event",
                    self.camera.id,
                    finding.output.rule_id,
                    finding.output.state,
                    finding.output.pts_s,
                )
        return events

    def _to_event(self, finding: Finding) -> Event:
        output, frame = finding.output, finding.frame
        started = time.perf_counter()
        ids = self._events.next_id(output)
        evidence = self._snapshot(finding, ids)
        self._stats.add_seconds("evidence", time.perf_counter() - started)
        if self._model_info is not None:
            self._events.model = self._model_info()  # a roll-out may have changed it
        return self._events.make(output, self._wall_clock(frame), evidence, ids)

    def _with_clip(self, event: Event, frames: Sequence[PastFrame]) -> Event:
        clip = self._clip(frames, (event.event_id, event.seq), event.rule_id)
        if clip is None:
            return event
        return event.model_copy(update={"evidence": [*event.evidence, clip]})

    def _clip(
        self, frames: Sequence[PastFrame], ids: tuple[str, int], rule_id: str
    ) -> Evidence | None:
        """The kept (already masked) frames, faces blurred, as an MP4 evidence file; None when
        there is no store, no frame, or redaction or encoding failed (the event still goes out,
        with its pictures; nothing unredacted is ever written)."""
        if self.evidence is None or not frames:
            return None
        name = f"{ids[0]}-{ids[1]:04d}-clip.mp4"
        try:
            times = [f.pts_s for f in frames]
            images, record = self._clip_redactor.frames(
                [decode_jpeg(f.jpeg) for f in frames], self._blur_faces.get(rule_id, True), times
            )
            data = encode_mp4(list(zip(times, images, strict=True)))
            stored = self.evidence.put(name, data, "clip", CLIP_TYPE, "clip")
            return _redacted(stored.model_copy(update={"start_pts_s": times[0]}), record)
        except (ClipError, RedactionError, OSError, cv2.error):
            logger.exception("camera %s: could not make the evidence clip %s", self.camera.id, name)
            return None

    def _snapshot(self, finding: Finding, ids: tuple[str, int]) -> list[Evidence]:
        if self.evidence is None:  # no evidence kept in this run (a replay without a folder)
            return []
        output, frame = finding.output, finding.frame
        role = {"new": "onset", "update": "latest", "end": "closing"}[output.state]
        caption = stamp(frame.wall_s)
        annotation = Annotation(
            self._zones.get(output.zone_id), output.highlight, caption, _paths(output)
        )
        blur = self._blur_faces.get(output.rule_id, True)
        try:
            image, record = self._redactor.image(frame.image, blur, list(finding.people))
            files = [(role, encode_jpeg(annotate(image, annotation)), record)]
            if self._history is not None and output.rule_id in self._pile_rules:
                files.extend(self._pile_evidence(output, frame, blur))
        except (ValueError, cv2.error):  # the face finder failed, or OpenCV could not handle
            # the frame: the event still goes out, without pictures (nothing unredacted written)
            logger.exception("camera %s: could not make the evidence snapshot", self.camera.id)
            return []
        evidence = []
        for file_role, data, file_record in files:
            name = f"{ids[0]}-{ids[1]:04d}-{file_role}.jpg"
            try:
                stored = self.evidence.put(name, data, "snapshot", "image/jpeg", file_role)
                evidence.append(_redacted(stored, file_record))
            except OSError:
                logger.exception("camera %s: could not write evidence %s", self.camera.id, name)
        return evidence

    def _pile_evidence(
        self, output: RuleOutput, frame: Frame, blur: bool
    ) -> list[tuple[str, bytes, RedactionRecord]]:
        """Enforcement evidence for a garbage pile: at `new`, the moment it appeared and the
        person or vehicle there just before (faces blurred, vehicles and plates kept); at
        `end`, the 'before' picture again beside the closing ('after') one."""
        assert self._history is not None  # noqa: S101
        if output.state == "end":
            before = self._pile_onsets.pop(output.rule_id, None)
            return [("before", *before)] if before is not None else []
        if output.state != "new":
            return []
        files: list[tuple[str, bytes, RedactionRecord]] = []
        appeared = self._history.at(output.onset_s)
        if appeared is not None:
            caption = stamp(frame.wall_s - (frame.pts_s - appeared.pts_s))
            picture = self._annotated(appeared, [output.box], caption, blur)
            files.append(("appeared", *picture))
            self._pile_onsets[output.rule_id] = picture
        actor = self._history.actor_before(output.onset_s, output.box)
        if actor is not None:
            past, box = actor
            caption = stamp(frame.wall_s - (frame.pts_s - past.pts_s))
            files.append(("offender", *self._annotated(past, [box], caption, blur)))
        return files

    def _annotated(
        self, past: PastFrame, boxes: Sequence[Box], caption: str, blur: bool
    ) -> tuple[bytes, RedactionRecord]:
        """A kept (already masked) frame with faces blurred (the people the detector saw then
        included), then boxes and a caption drawn."""
        image, record = self._redactor.image(decode_jpeg(past.jpeg), blur, past.people)
        return encode_jpeg(annotate(image, Annotation(None, tuple(boxes), caption))), record


def stamp(wall_s: float) -> str:
    """The caption burnt into a picture: when it was seen, in the box's local time, as a CCTV
    recorder prints it (digits only: what the picture shows, which camera and which rule, the
    dashboard says in the operator's language from the event; ids and English words were once
    drawn here and read as noise in a zh-CN command center)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_s))


def _paths(output: RuleOutput) -> list[list[tuple[float, float]]]:
    """The trajectories an output carries (`details.trajectories` or `.trajectory`, as
    `[[pts_s, x, y], ...]`), as polylines to draw."""
    found = output.details.get("trajectories") or [output.details.get("trajectory") or []]
    paths = []
    for trajectory in found:
        points = [(float(p[1]), float(p[2])) for p in trajectory if len(p) >= 3]
        if points:
            paths.append(points)
    return paths


def _redacted(evidence: Evidence, record: RedactionRecord) -> Evidence:
    return evidence.model_copy(update={"redaction": record.as_details()})


def _with_privacy(event: Event) -> Event:
    """The event's `details.privacy`: which privacy masks were applied to its evidence, in
    which style, and how many faces were blurred (each file's own record is in its
    `evidence[].redaction`)."""
    records = [e.redaction for e in event.evidence if e.redaction is not None]
    if not records:
        return event
    masks = sorted({m for r in records for m in r.get("masks", [])})
    faces = [r.get("faces", {}) for r in records]
    privacy = {
        "masks": masks,
        "mask_style": records[0].get("mask_style"),
        "faces_blurred": max((f.get("blurred", 0) for f in faces), default=0),
        "faces_skipped": sorted({f["skipped"] for f in faces if "skipped" in f}),
    }
    return event.model_copy(update={"details": {**event.details, "privacy": privacy}})
