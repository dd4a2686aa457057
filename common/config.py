"""Site configuration (contract section 2), shared by the edge and the server.

`load_site_config` reads a YAML file and either returns a validated, frozen `SiteConfig` or
raises `ConfigError` listing *every* problem, each named by file, camera, zone, rule and key.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

_REFERENCE_TAG = "bad references: "
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

SiteId = Annotated[str, Field(pattern=r"^[a-z0-9-]+$", min_length=1, max_length=63)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
UnitFloat = Annotated[float, Field(ge=0.0, le=1.0)]
NormPoint = tuple[UnitFloat, UnitFloat]

VEHICLE_CLASSES: tuple[str, ...] = (
    "car",
    "bus",
    "truck",
    "motorcycle",
    "bicycle",
    "tricycle",
    "van",
    "e-bike",
)


class StrictModel(BaseModel):
    """Config base: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Signed-free area of a simple polygon (shoelace)."""
    area = 0.0
    for (x1, y1), (x2, y2) in zip(points, [*points[1:], points[0]], strict=True):
        area += x1 * y2 - x2 * y1
    return abs(area) / 2.0


def _segments_cross(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]
) -> bool:
    def orient(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2 = orient(c, d, a), orient(c, d, b)
    d3, d4 = orient(a, b, c), orient(a, b, d)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


def polygon_problem(points: Sequence[tuple[float, float]]) -> str | None:
    """Why a polygon cannot be used as a zone, or None when it is fine."""
    if len(points) < 3:
        return f"a polygon needs at least 3 points, got {len(points)}"
    if polygon_area(points) < 1e-6:
        return "the polygon has no area (its points are on one line or repeated)"
    edges = list(zip(points, [*points[1:], points[0]], strict=True))
    for i, (a, b) in enumerate(edges):
        for j in range(i + 2, len(edges)):
            if i == 0 and j == len(edges) - 1:
                continue  # neighbours through the closing edge
            c, d = edges[j]
            if _segments_cross(a, b, c, d):
                return f"the polygon crosses itself (edge {i} crosses edge {j})"
    return None


Polygon = Annotated[list[NormPoint], Field(min_length=3)]


def _check_polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    problem = polygon_problem(points)
    if problem is not None:
        raise ValueError(problem)
    return points


MAX_LANE_WIDTH_M = 100.0  # wider than any lane or yard: a width in centimetres or millimetres

DEFAULT_MIN_OBJECT_SIZE_M = 0.3
"""Smallest object left in a fire lane, in metres across the lane, where the zone's width is
known: a rubbish bag, a carton, a crate, a bin (0.3-0.6 m) narrows the 4 m clear width
(GB 50016) that a 2.5 m fire engine, its crew and hoses need; smaller things (a bottle, a can,
paper, leaves) are litter, not an obstruction (docs/fire-lane.md, "Object size")."""

DEFAULT_MIN_OBJECT_AREA = 0.0015
"""Smallest object left in a fire lane, as a share of the frame, where the zone's width is not
known: a 0.3 m object in a 4 m lane that spans a third of the picture's width (the middle
distance of a camera looking along a lane) covers about 0.001 of a 16:9 frame; a 25x30 px bag
in 720x480 covers 0.002 (docs/fire-lane.md, "Object size")."""


class ZoneConfig(StrictModel):
    id: Identifier
    polygon: Polygon = Field(
        description="Normalised (x, y) points: (0,0) top-left, (1,1) bottom-right"
    )
    name: str | None = Field(default=None, description="Human-readable name for the dashboard")
    lane_width_m: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LANE_WIDTH_M,
        description="The lane's width on the ground, kerb to kerb, in metres (a fire lane: at "
        "least 4 by GB 50016), the polygon drawn along its two kerbs by a camera looking along "
        "it; with it, a fire_lane rule judges left objects by their size in metres "
        "(`min_object_size_m`), the same on every camera",
    )

    _polygon_ok = field_validator("polygon")(_check_polygon)


EvidenceFaces = Literal["blur", "keep"]
"""A rule's `evidence_faces`: faces in its evidence blurred, or kept."""


class _RuleBase(StrictModel):
    id: Identifier
    zone: Identifier = Field(description="A zone id of this camera")
    name: str | None = Field(default=None, description="Human-readable name for the dashboard")
    enabled: bool = True
    evidence_faces: EvidenceFaces = Field(
        default="blur",
        description="Faces in this rule's evidence: blurred (the default), or kept where the "
        "operator needs to see the person (a fall victim); privacy masks apply either way",
    )


class FireLaneRuleConfig(_RuleBase):
    """Fire lane blocked: a vehicle at rest, or an object left standing, in the lane."""

    type: Literal["fire_lane"]
    dwell_s: float = Field(default=120.0, gt=0, description="Blocked this long before the alert")
    clear_s: float = Field(
        default=20.0, gt=0, description="The lane must stay clear this long before `end`"
    )
    update_interval_s: float = Field(
        default=60.0, gt=0, description="While blocked, an `update` is sent this often"
    )
    vehicle_classes: tuple[str, ...] = Field(
        default=VEHICLE_CLASSES, min_length=1, description="Detector classes that count as vehicles"
    )
    object_classes: tuple[str, ...] = Field(
        default=("suitcase", "backpack", "handbag", "bench", "chair", "potted plant"),
        description="Detector classes counted as objects left in the lane (in addition to "
        "objects found from the scene itself)",
    )
    detect_left_objects: bool = Field(
        default=True, description="Find objects left standing in the lane from the scene itself"
    )
    min_object_area: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Smallest left object, as a fraction of the frame area. Set, it is used "
        "whatever the zone says; unset, objects are judged by `min_object_size_m` where the "
        f"zone has a `lane_width_m`, else by {DEFAULT_MIN_OBJECT_AREA} of the frame",
    )
    min_object_size_m: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LANE_WIDTH_M,
        description="Smallest left object, in metres across the lane, on a zone with a "
        f"`lane_width_m` (unset: {DEFAULT_MIN_OBJECT_SIZE_M}); not together with "
        "`min_object_area`",
    )
    rest_s: float = Field(
        default=3.0, gt=0, description="A vehicle counts as at rest after this long without moving"
    )
    rest_tolerance: float = Field(
        default=0.25,
        gt=0,
        le=2,
        description="At rest means the ground point moved less than this fraction of the box size",
    )
    min_score: UnitFloat = Field(default=0.35, description="Detector score needed for a vehicle")

    @field_validator("min_object_size_m")
    @classmethod
    def _one_object_size(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("min_object_area") is not None:
            raise ValueError(
                "min_object_size_m and min_object_area both set: give one of them (metres, "
                "with the zone's lane_width_m, or a share of the frame)"
            )
        return value


GARBAGE_KINDS: dict[str, tuple[str, ...]] = {
    # what a pile holds → detector class names that mean it (a model trained as in
    # docs/training.md uses the first names; COCO's bag-like classes are accepted too)
    "bag": ("garbage_bag", "bag", "handbag", "backpack", "suitcase"),
    "box": ("box", "carton", "cardboard"),
    "bulky_waste": ("bulky_waste", "furniture", "mattress", "couch", "chair", "bed"),
    "overflowing_bin": ("overflowing_bin", "bin_overflow", "bin"),
    "litter": ("litter", "bottle", "cup", "trash"),
}


class PileClassifierConfig(StrictModel):
    """A garbage detector that confirms and classifies what a new region holds."""

    model: str = Field(description="A detector in models/registry.yaml trained for garbage")
    classes: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(GARBAGE_KINDS),
        description="Kind of waste → the detector class names that mean it",
    )
    min_score: UnitFloat = Field(default=0.3, description="Detector score needed to count")
    require: bool = Field(
        default=False,
        description="True: alert only once the model finds waste in the region (it is asked "
        "again every `recheck_s`); false: the scene alone decides and the model classifies",
    )
    recheck_s: float = Field(
        default=10.0, gt=0, description="While unconfirmed, ask the model again this often"
    )


class GarbagePileRuleConfig(_RuleBase):
    type: Literal["garbage_pile"]
    dwell_s: float = Field(default=300.0, gt=0)
    clear_s: float = Field(default=60.0, gt=0)
    update_interval_s: float = Field(default=300.0, gt=0)
    min_area: float = Field(
        default=0.0005,
        gt=0,
        le=1,
        description="Smallest pile, as a fraction of the frame area (0.0005 is one rubbish bag "
        "some 15 m from a 1080p camera)",
    )
    classifier: PileClassifierConfig | None = Field(
        default=None,
        description="Optional garbage detector to confirm and classify the pile; without "
        "one, the scene-based rule alone decides",
    )


class FloorMark(StrictModel):
    """One floor's slab line (its floor level), marked on a still frame of the camera."""

    floor: int = Field(description="The floor whose floor level (slab) the line marks")
    line: tuple[NormPoint, NormPoint] = Field(
        description="Two normalised points on the slab line, e.g. at the facade's left and "
        "right edges"
    )

    @field_validator("line")
    @classmethod
    def _not_vertical(
        cls, line: tuple[tuple[float, float], tuple[float, float]]
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        (x1, _), (x2, _) = line
        if abs(x2 - x1) < 0.01:
            raise ValueError("the two points of a slab line must lie apart left to right")
        return line


class FallingObjectRuleConfig(_RuleBase):
    """Objects thrown or dropped down a facade (高空抛物); docs/falling-object.md."""

    type: Literal["falling_object"]
    min_fall_px: float = Field(
        default=40.0, gt=0, description="An object must fall at least this many pixels"
    )
    ignore_areas: list[Polygon] = Field(
        default_factory=list,
        description="Areas of the zone never looked at (trees, sky, flags, a busy window)",
    )
    floors: list[FloorMark] = Field(
        default_factory=list,
        description="Slab lines of some floors (two or more); the event then names the floor "
        "the object came from",
    )
    floor_height_m: float = Field(
        default=3.0, gt=0, le=10, description="Storey height, to scale gravity from the floors"
    )
    min_accel_g: float = Field(
        default=0.15,
        gt=0,
        le=2,
        description="With floors: the fitted downward acceleration must reach this share of g",
    )
    min_accel_px_s2: float = Field(
        default=30.0,
        gt=0,
        description="Without floors: the fitted downward acceleration must reach this many "
        "pixels per second squared",
    )
    group_s: float = Field(
        default=2.0,
        gt=0,
        description="Objects released within this long of the last landing are one incident; "
        "`end` once nothing more has fallen for this long",
    )
    min_duration_s: float = Field(
        default=0.25, gt=0, description="A fall must be followed for at least this long"
    )
    min_points: int = Field(
        default=6, ge=4, description="A fall must be seen on at least this many frames"
    )
    max_gap_s: float = Field(
        default=0.2, gt=0, description="A speck unseen for longer than this has landed or gone"
    )
    max_speed: float = Field(
        default=2.5, gt=0, description="Fastest fall followed, in frame heights per second"
    )
    confirm_after_s: float = Field(
        default=1.5,
        gt=0,
        description="A fall followed this long is alerted while still falling (tall buildings)",
    )
    max_extrapolation_s: float = Field(
        default=1.5,
        ge=0,
        description="The release is extrapolated at most this long before the first sighting",
    )
    min_contrast: int = Field(
        default=8, ge=1, le=255, description="Smallest grey-level change that can be a speck"
    )
    noise_factor: float = Field(
        default=3.0,
        gt=0,
        description="A speck must stand out this many times the local frame-to-frame noise",
    )
    max_speck_px: int = Field(
        default=900, ge=4, description="Largest speck, in pixels of area (larger: not an object)"
    )
    max_specks: int = Field(
        default=60,
        ge=1,
        description="More moving specks than this in one frame (rain, a shake, lights switched) "
        "and the frame is skipped",
    )
    analysis_scale: float = Field(
        default=1.0,
        gt=0.2,
        le=1.0,
        description="Scale the zone is analysed at (1: full resolution; 0.5 for 4K cameras)",
    )
    clip_pre_s: float = Field(
        default=5.0, ge=0, le=30, description="The clip starts this long before the release"
    )
    clip_post_s: float = Field(
        default=2.0, ge=0, le=30, description="The clip ends this long after the alert"
    )

    @field_validator("ignore_areas")
    @classmethod
    def _areas_ok(cls, areas: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        return [_check_polygon(area) for area in areas]

    @field_validator("floors")
    @classmethod
    def _floors_ok(cls, floors: list[FloorMark]) -> list[FloorMark]:
        if not floors:
            return floors
        if len(floors) < 2:
            raise ValueError("mark at least two floors (or none)")
        numbers = [mark.floor for mark in floors]
        if len(set(numbers)) != len(numbers):
            raise ValueError("a floor is marked twice")
        ordered = sorted(floors, key=lambda mark: mark.floor)
        heights = [(mark.line[0][1] + mark.line[1][1]) / 2 for mark in ordered]
        if any(upper >= lower for lower, upper in itertools.pairwise(heights)):
            raise ValueError("a higher floor must be marked higher in the picture")
        return ordered


class PersonFallRuleConfig(_RuleBase):
    """A person falls: a fast drop of the body, then lying on the ground (docs/person-fall.md)."""

    type: Literal["person_fall"]
    lying_s: float = Field(
        default=2.0, gt=0, description="Down on the ground this long after the drop before `new`"
    )
    clear_s: float = Field(
        default=10.0, gt=0, description="After `new`: `end` once nobody is seen there this long"
    )
    model: str = Field(default="yolov8n-pose-640", description="Pose model from the registry")
    analysis_fps: float = Field(
        default=8.0, gt=0, le=30, description="Pose analyses per second of stream"
    )
    min_score: UnitFloat = Field(default=0.3, description="Pose detection score for a person")
    keypoint_min_conf: UnitFloat = Field(
        default=0.5, description="A keypoint with a lower visibility is treated as missing"
    )
    fall_window_s: float = Field(
        default=1.5, gt=0, le=5, description="The drop must happen within this many seconds"
    )
    min_drop: float = Field(
        default=0.4,
        gt=0,
        le=2,
        description="Head (or box top) drop needed, as a fraction of the person's standing height",
    )
    min_drop_speed: float = Field(
        default=0.7, gt=0, description="Mean drop speed needed, in standing heights per second"
    )
    min_hip_drop: float = Field(
        default=0.15,
        ge=0,
        le=2,
        description="Hip drop needed when hips are visible (rejects bending over), in heights",
    )
    lying_angle_deg: float = Field(
        default=60.0, gt=0, le=180, description="Torso this far from upright counts as lying"
    )
    upright_angle_deg: float = Field(
        default=30.0, ge=0, lt=90, description="Torso within this of vertical counts as upright"
    )
    recover_s: float = Field(
        default=0.5, gt=0, description="Before `new`: upright this long cancels the fall"
    )
    upright_s: float = Field(
        default=2.0, gt=0, description="After `new`: upright this long at the spot gives `end`"
    )
    update_interval_s: float | None = Field(
        default=None, gt=0, description="While lying after `new`, an `update` this often; none"
    )
    roi_margin: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="The pose model sees the zone's bounds grown by this fraction of the frame",
    )
    motion_min_changed: float = Field(
        default=0.002,
        ge=0,
        le=1,
        description="With nobody tracked, the model runs only when this fraction of the "
        "region changed (0: always)",
    )
    recheck_s: float = Field(
        default=2.0, gt=0, description="With nobody tracked, run the model at least this often"
    )
    clip_pre_s: float = Field(default=5.0, ge=0, description="Evidence clip before the onset")
    clip_post_s: float = Field(default=2.0, ge=0, description="Evidence clip after the alert")


RuleConfig = Annotated[
    FireLaneRuleConfig | GarbagePileRuleConfig | FallingObjectRuleConfig | PersonFallRuleConfig,
    Field(discriminator="type"),
]
RULE_TYPES: tuple[str, ...] = ("fire_lane", "garbage_pile", "falling_object", "person_fall")


class DetectorConfig(StrictModel):
    model: str = Field(default="yolov8n-640", description="A model name from models/registry.yaml")
    min_score: UnitFloat = Field(default=0.25, description="Detections below this are dropped")
    iou: UnitFloat = Field(default=0.5, description="NMS overlap threshold")
    providers: tuple[str, ...] = Field(
        default=(),
        description="onnxruntime execution providers in order of preference; empty: the best "
        "installed (TensorRT, CUDA, OpenVINO, CPU)",
    )


class MotionConfig(StrictModel):
    enabled: bool = Field(default=True, description="Run the detector only when something moved")
    recheck_s: float = Field(
        default=2.0, gt=0, description="Run the detector at least this often on a quiet scene"
    )
    min_changed: float = Field(
        default=0.0005, gt=0, le=1, description="Fraction of the watched area that must change"
    )


Rotation = Literal[0, 90, 180, 270]
ROTATIONS: tuple[Rotation, ...] = (0, 90, 180, 270)


class PrivacyConfig(StrictModel):
    """How evidence is redacted before it is written (masks from `privacy_masks`, faces)."""

    mask_style: Literal["black", "blur", "pixelate"] = Field(
        default="black",
        description="How the privacy masks are hidden: black fill, or content made "
        "unrecoverable by large mosaic cells (pixelate) smoothed over (blur)",
    )
    blur_faces: bool = Field(
        default=True, description="Blur faces in every snapshot and clip (rules may opt out)"
    )
    face_model: str = Field(
        default="yolov8n-pose-640",
        description="Pose model (registry name) whose head keypoints place the faces (the second "
        "source, beside face_detector) and whose people have their head region blurred when no "
        "face was found for them",
    )
    face_min_score: UnitFloat = Field(
        default=0.1,
        description="Heads of people the pose model finds with at least this score are blurred "
        "(low: a missed face costs more than a blurred patch of wall)",
    )
    face_detector: str | None = Field(
        default="centerface-640",
        description="Face detector (registry name) made for anonymisation; null leaves only the "
        "pose model's keypoints, which miss faces of people lying down, turned or far away",
    )
    face_detector_min_score: UnitFloat = Field(
        default=0.2,
        description="Faces the detector finds with at least this score are blurred",
    )
    face_rotations: list[Rotation] = Field(
        default_factory=lambda: list(ROTATIONS),
        min_length=1,
        description="The face detector looks at the frame turned by these degrees (clockwise): "
        "the faces of people lying down or upside down are found only in a turned view",
    )
    face_search_px: int = Field(
        default=1280,
        ge=320,
        le=7680,
        description="Frames are searched for faces at up to this many pixels along their longer "
        "side, in tiles of the face model's input size where they are larger than it",
    )
    clip_face_every_s: float = Field(
        default=0.5,
        gt=0,
        le=2,
        description="In clips, faces are found on one frame this often and carried between "
        "(moved linearly, grown a little); lower costs more pose-model runs per clip",
    )

    @field_validator("face_rotations")
    @classmethod
    def _distinct_rotations(cls, value: list[Rotation]) -> list[Rotation]:
        if len(set(value)) != len(value):
            raise ValueError(f"each rotation once, got {value}")
        return value


class CameraConfig(StrictModel):
    id: Identifier
    name: str | None = None
    source: str | int = Field(
        description="rtsp://user:${CAM_PASSWORD}@host/stream, a file path, or a device index"
    )
    zones: list[ZoneConfig] = Field(default_factory=list)
    privacy_masks: list[Polygon] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    detect_fps: float = Field(default=5.0, gt=0, le=60, description="Analysis frames per second")
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    enabled: bool = True

    _masks_ok = field_validator("privacy_masks")(
        lambda masks: [_check_polygon(mask) for mask in masks]
    )

    @field_validator("source")
    @classmethod
    def _env_present(cls, value: str | int) -> str | int:
        if isinstance(value, str):
            missing = [name for name in ENV_REF.findall(value) if name not in os.environ]
            if missing:
                raise ValueError(f"environment variable {', '.join(missing)} is not set")
            if not value.strip():
                raise ValueError("source is empty")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        problems = _camera_reference_problems(self.model_dump())
        if problems:
            details = "; ".join(f"{p.location}: {p.message}" for p in problems)
            raise ValueError(f"{_REFERENCE_TAG}{details}")
        return self

    def zone(self, zone_id: str) -> ZoneConfig:
        for zone in self.zones:
            if zone.id == zone_id:
                return zone
        raise KeyError(zone_id)


class SiteInfo(StrictModel):
    id: SiteId
    name: str | None = None
    timezone: str = "Asia/Shanghai"


class SiteConfig(StrictModel):
    site: SiteInfo
    cameras: list[CameraConfig] = Field(min_length=1)
    config_dir: Path | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _unique_cameras(self) -> Self:
        ids = [camera.id for camera in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"{_REFERENCE_TAG}camera ids repeated: {', '.join(dupes)}")
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        known = ", ".join(camera.id for camera in self.cameras)
        raise KeyError(f"no camera {camera_id!r} in site {self.site.id} (cameras: {known})")

    def resolve_source(self, camera: CameraConfig) -> str | int:
        """The camera's source with `${ENV}` expanded and a relative path made absolute."""
        return resolve_source(camera.source, self.config_dir)


def resolve_source(source: str | int, config_dir: Path | None) -> str | int:
    if isinstance(source, int):
        return source
    expanded = ENV_REF.sub(lambda m: os.environ[m.group(1)], source)
    if expanded.strip().isdigit():
        return int(expanded.strip())
    if "://" in expanded:
        return expanded
    path = Path(expanded).expanduser()
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    return str(path)


def redact_url(source: str | int) -> str:
    """A source fit for logs: the password of an URL replaced by ***."""
    text = str(source)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------------------------
# Problems, located by file, camera, zone, rule and key.


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: str
    location: str  # "camera gate-east, zone lane-north, key polygon[1][0]"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.location}" if self.location else self.file
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """An invalid site config; `problems` lists every one of them."""

    def __init__(self, file: str, problems: Sequence[ConfigProblem]) -> None:
        self.file = file
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{file}: invalid site config, {len(self.problems)} problem(s):\n{lines}")


def _name_of(items: Any, index: Any, kind: str) -> str:
    if isinstance(items, list) and isinstance(index, int) and 0 <= index < len(items):
        item = items[index]
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            return f"{kind} {item['id']}"
    return f"{kind} #{index}"


def locate(raw: Any, loc: Sequence[int | str]) -> str:
    """Turn a pydantic error location into 'camera X, zone Y, key polygon[1][0]'."""
    parts: list[str] = []
    key: list[str] = []
    node: Any = raw
    i = 0
    while i < len(loc):
        step = loc[i]
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if step in ("cameras", "zones", "rules") and isinstance(nxt, int) and not key:
            kind = {"cameras": "camera", "zones": "zone", "rules": "rule"}[str(step)]
            items = node.get(step) if isinstance(node, dict) else None
            parts.append(_name_of(items, nxt, kind))
            node = items[nxt] if isinstance(items, list) and nxt < len(items) else None
            i += 2
            # a discriminated union adds the rule type as a location step: skip it
            if kind == "rule" and i < len(loc) and loc[i] in RULE_TYPES:
                i += 1
            continue
        if isinstance(step, int):
            key.append(f"[{step}]")
        else:
            key.append(f".{step}" if key else str(step))
        node = node.get(step) if isinstance(node, dict) else None
        i += 1
    if key:
        parts.append("key " + "".join(key))
    return ", ".join(parts)


def _camera_reference_problems(camera: dict[str, Any]) -> list[ConfigProblem]:
    """Zone and rule ids unique, every rule names a zone of its camera."""
    problems: list[ConfigProblem] = []
    zones = camera.get("zones") or []
    rules = camera.get("rules") or []
    zone_ids = [z.get("id") for z in zones if isinstance(z, dict)]
    for dup in sorted({z for z in zone_ids if isinstance(z, str) and zone_ids.count(z) > 1}):
        problems.append(ConfigProblem("", f"zone {dup}", "zone id repeated in this camera"))
    rule_ids = [r.get("id") for r in rules if isinstance(r, dict)]
    for dup in sorted({r for r in rule_ids if isinstance(r, str) and rule_ids.count(r) > 1}):
        problems.append(ConfigProblem("", f"rule {dup}", "rule id repeated in this camera"))
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or "zone" not in rule:
            continue
        if rule["zone"] not in zone_ids:
            known = ", ".join(str(z) for z in zone_ids) or "none"
            problems.append(
                ConfigProblem(
                    "",
                    f"{_name_of(rules, index, 'rule')}, key zone",
                    f"names zone {rule['zone']!r}, which this camera does not have "
                    f"(zones: {known})",
                )
            )
            continue
        zone = next(z for z in zones if isinstance(z, dict) and z.get("id") == rule["zone"])
        problem = _object_size_problem(rule, zone)
        if problem is not None:
            where = f"{_name_of(rules, index, 'rule')}, key min_object_size_m"
            problems.append(ConfigProblem("", where, problem))
    return problems


def _object_size_problem(rule: dict[str, Any], zone: dict[str, Any]) -> str | None:
    """Why a fire_lane rule's size in metres cannot be judged on its zone, or None."""
    size = rule.get("min_object_size_m")
    if rule.get("type") != "fire_lane" or not isinstance(size, int | float):
        return None
    width = zone.get("lane_width_m")
    if width is None:
        return (
            f"a size in metres needs the lane's width: set lane_width_m on zone {zone['id']} "
            "(its width kerb to kerb, in metres), or give min_object_area instead"
        )
    if isinstance(width, int | float) and size >= width:
        return (
            f"{size} m is not less than the lane's width (zone {zone['id']}: lane_width_m "
            f"{width}): no object could be that wide and still be in it"
        )
    return None


def _problems_from_raw(file: str, raw: Any) -> list[ConfigProblem]:
    """Cross-reference checks on the raw YAML, so they are reported beside field errors."""
    problems: list[ConfigProblem] = []
    cameras = raw.get("cameras") if isinstance(raw, dict) else None
    if not isinstance(cameras, list):
        return problems
    ids = [c.get("id") for c in cameras if isinstance(c, dict)]
    for dup in sorted({i for i in ids if isinstance(i, str) and ids.count(i) > 1}):
        problems.append(ConfigProblem(file, f"camera {dup}", "camera id repeated in this site"))
    for index, camera in enumerate(cameras):
        if not isinstance(camera, dict):
            continue
        prefix = _name_of(cameras, index, "camera")
        for problem in _camera_reference_problems(camera):
            problems.append(ConfigProblem(file, f"{prefix}, {problem.location}", problem.message))
    return problems


def _problems_from_validation(file: str, raw: Any, error: ValidationError) -> list[ConfigProblem]:
    problems = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (not part of the site config)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "union_tag_invalid":
            message = f"rule type must be one of: {', '.join(RULE_TYPES)}"
        location = locate(raw, item["loc"])
        if not location:
            location = "top level"
        problems.append(ConfigProblem(file, location, message))
    return problems


def parse_site_config(
    raw: Any, file: str = "<config>", config_dir: Path | None = None
) -> SiteConfig:
    """Validate already-parsed YAML; raise ConfigError with every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(file, [ConfigProblem(file, "", "the file must hold a YAML mapping")])
    try:
        site = SiteConfig.model_validate({**raw, "config_dir": config_dir})
    except ValidationError as error:
        # Reference problems come from the raw YAML, where they are located more precisely and
        # are found even for a camera whose other fields failed (pydantic then skips them).
        problems = [
            problem
            for problem in _problems_from_validation(file, raw, error)
            if not problem.message.startswith(_REFERENCE_TAG)
        ]
        problems.extend(_problems_from_raw(file, raw))
        raise ConfigError(file, problems) from None
    return site


def load_site_config(path: str | Path) -> SiteConfig:
    """Read and validate a site YAML file; raise ConfigError listing every problem."""
    file = Path(path)
    name = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            name, [ConfigProblem(name, "", f"cannot read: {error.strerror}")]
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(
            name, [ConfigProblem(name, where, f"not valid YAML: {problem}")]
        ) from None
    return parse_site_config(raw, name, file.resolve().parent)
