"""Site config (contract section 2): validation, defaults, located problems, sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import (
    VEHICLE_CLASSES,
    ConfigError,
    ConfigProblem,
    FireLaneRuleConfig,
    SiteConfig,
    load_site_config,
    locate,
    parse_site_config,
    redact_url,
    resolve_source,
)

REPO = Path(__file__).resolve().parents[2]

CONTRACT_EXAMPLE = """\
site:
  id: garden-court            # [a-z0-9-]+
cameras:
  - id: gate-east             # unique in the site
    source: rtsp://user:${CAM_PASSWORD}@10.0.0.5/stream1   # or a file path, or a device index
    zones:
      - id: lane-north
        polygon: [[0.10, 0.55], [0.45, 0.50], [0.60, 1.0], [0.05, 1.0]]
    privacy_masks:            # optional: areas hidden in every snapshot and clip written
      - [[0.60, 0.00], [1.00, 0.00], [1.00, 0.40], [0.60, 0.40]]
    rules:
      - id: lane-north-blocked
        type: fire_lane       # fire_lane | garbage_pile | falling_object | person_fall
        zone: lane-north      # a zone id of this camera
        dwell_s: 120          # fire_lane, garbage_pile: seconds the situation must persist
"""

SQUARE = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]


def site(**camera_overrides: Any) -> dict[str, Any]:
    """A minimal valid raw site config; keyword arguments replace keys of its one camera."""
    camera: dict[str, Any] = {
        "id": "cam-1",
        "source": 0,
        "zones": [{"id": "lane", "polygon": SQUARE}],
        "rules": [{"id": "lane-blocked", "type": "fire_lane", "zone": "lane", "dwell_s": 30}],
    }
    camera.update(camera_overrides)
    return {"site": {"id": "test-site"}, "cameras": [camera]}


def write(tmp_path: Path, raw: Any, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def problems_of(raw: Any, file: str = "f.yaml") -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_site_config(raw, file)
    return caught.value.problems


# The contract example and defaults ----------------------------------------------------------


def test_contract_example_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    config = load_site_config(write(tmp_path, CONTRACT_EXAMPLE))
    camera = config.camera("gate-east")
    assert config.site.id == "garden-court"
    assert camera.zone("lane-north").polygon[2] == (0.60, 1.0)
    assert camera.privacy_masks[0][2] == (1.0, 0.40)
    rule = camera.rules[0]
    assert isinstance(rule, FireLaneRuleConfig)
    assert (rule.id, rule.zone, rule.dwell_s) == ("lane-north-blocked", "lane-north", 120)
    assert config.resolve_source(camera) == "rtsp://user:s3cret@10.0.0.5/stream1"


def test_pinned_keys_alone_get_defaults() -> None:
    config = parse_site_config(site())
    camera = config.cameras[0]
    rule = camera.rules[0]
    assert isinstance(rule, FireLaneRuleConfig)
    assert camera.detect_fps == 5.0
    assert camera.motion.enabled is True
    assert camera.detector.model == "yolov8n-640"
    assert camera.privacy_masks == []
    assert rule.enabled is True
    assert rule.clear_s == 20.0
    assert rule.update_interval_s == 60.0
    assert rule.vehicle_classes == VEHICLE_CLASSES
    assert rule.detect_left_objects is True
    assert config.site.timezone == "Asia/Shanghai"


def test_config_is_frozen() -> None:
    config = parse_site_config(site())
    with pytest.raises(ValueError, match="frozen"):
        config.cameras[0].detect_fps = 10.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        ({**site(), "extra": 1}, "key extra"),
        ({"site": {"id": "s", "colour": "red"}, "cameras": site()["cameras"]}, "key site.colour"),
        (site(bogus=True), "camera cam-1, key bogus"),
        (site(zones=[{"id": "lane", "polygon": SQUARE, "area": 3}]), "camera cam-1, zone lane"),
        (
            site(rules=[{"id": "r", "type": "fire_lane", "zone": "lane", "dwel_s": 3}]),
            "camera cam-1, rule r, key dwel_s",
        ),
    ],
)
def test_unknown_keys_are_refused(raw: dict[str, Any], location: str) -> None:
    (problem,) = problems_of(raw)
    assert problem.location.startswith(location)
    assert "unknown key" in problem.message


def test_missing_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZZ_NOT_SET_PASSWORD", raising=False)
    raw = site(source="rtsp://u:${ZZ_NOT_SET_PASSWORD}@h/s")
    (problem,) = problems_of(raw)
    assert problem.location == "camera cam-1, key source"
    assert "ZZ_NOT_SET_PASSWORD" in problem.message


def test_set_environment_variable_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZZ_SET_PASSWORD", "pw")
    config = parse_site_config(site(source="rtsp://u:${ZZ_SET_PASSWORD}@h/s"))
    assert config.resolve_source(config.cameras[0]) == "rtsp://u:pw@h/s"


# Every problem at once, each located ---------------------------------------------------------

MANY_FAULTS = """\
site:
  id: Bad_Site
cameras:
  - id: cam-a
    source: rtsp://host/stream
    zones:
      - id: z-out
        polygon: [[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]
      - id: z-two
        polygon: [[0.1, 0.1], [0.5, 0.1]]
      - id: z-cross
        polygon: [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.6]]
      - id: z-ok
        polygon: [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    rules:
      - id: r-missing
        type: fire_lane
        zone: nowhere
      - id: r-type
        type: teleport
        zone: z-ok
  - id: cam-b
    source: 0
"""

# (location, words of the message)
EXPECTED_FAULTS = [
    ("key site.id", "pattern"),
    ("camera cam-a, zone z-out, key polygon[1][0]", "less than or equal to 1"),
    ("camera cam-a, zone z-two, key polygon", "at least 3"),
    ("camera cam-a, zone z-cross, key polygon", "crosses itself"),
    ("camera cam-a, rule r-missing, key zone", "'nowhere'"),
    ("camera cam-a, rule r-type", "rule type must be one of"),
]


def test_every_problem_is_listed_with_its_location(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_FAULTS)
    with pytest.raises(ConfigError) as caught:
        load_site_config(path)
    error = caught.value
    assert error.file == str(path)
    found = [(p.location, p.message) for p in error.problems]
    for location, words in EXPECTED_FAULTS:
        assert any(loc == location and words in msg for loc, msg in found), (location, found)
    assert len(error.problems) == len(EXPECTED_FAULTS)
    for problem in error.problems:
        assert problem.file == str(path)
        assert str(problem) == f"{path}: {problem.location}: {problem.message}"
        assert str(problem) in str(error)


def test_duplicate_camera_id_alone_is_reported() -> None:
    raw = {"site": {"id": "s"}, "cameras": [{"id": "a", "source": 0}, {"id": "a", "source": 1}]}
    (problem,) = problems_of(raw)
    assert problem.location == "camera a"
    assert problem.message == "camera id repeated in this site"


def test_duplicate_camera_id_is_reported_beside_other_problems(tmp_path: Path) -> None:
    text = MANY_FAULTS.replace("id: cam-b", "id: cam-a")
    with pytest.raises(ConfigError) as caught:
        load_site_config(write(tmp_path, text))
    found = [(p.location, p.message) for p in caught.value.problems]
    assert ("camera cam-a", "camera id repeated in this site") in found, found
    assert len(found) > 1  # reported beside the other faults of the file


@pytest.mark.parametrize(
    ("camera", "location"),
    [
        ({"zones": [{"id": "z", "polygon": SQUARE}] * 2, "rules": []}, "camera cam-1, zone z"),
        (
            {
                "rules": [{"id": "r", "type": "fire_lane", "zone": "lane"}] * 2,
            },
            "camera cam-1, rule r",
        ),
    ],
)
def test_repeated_zone_and_rule_ids_are_located(camera: dict[str, Any], location: str) -> None:
    problems = problems_of(site(**camera))
    assert [p.location for p in problems] == [location]
    assert "repeated" in problems[0].message


def test_rule_naming_a_missing_zone_lists_known_zones() -> None:
    raw = site(rules=[{"id": "r", "type": "fire_lane", "zone": "elsewhere"}])
    (problem,) = problems_of(raw)
    assert problem.location == "camera cam-1, rule r, key zone"
    assert "'elsewhere'" in problem.message and "lane" in problem.message


def test_not_a_mapping_is_one_problem() -> None:
    (problem,) = problems_of([1, 2])
    assert problem.location == ""
    assert str(problem) == "f.yaml: the file must hold a YAML mapping"


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("site", "id"), "key site.id"),
        (("cameras", 0, "source"), "camera cam-1, key source"),
        (("cameras", 0, "zones", 0, "polygon", 1, 0), "camera cam-1, zone lane, key polygon[1][0]"),
        (
            ("cameras", 0, "rules", 0, "fire_lane", "dwell_s"),
            "camera cam-1, rule lane-blocked, key dwell_s",
        ),
        (("cameras", 5, "source"), "camera #5, key source"),
        (("cameras", 0, "zones", 9), "camera cam-1, zone #9"),
        ((), ""),
    ],
)
def test_locate(loc: tuple[int | str, ...], expected: str) -> None:
    assert locate(site(), loc) == expected


@pytest.mark.parametrize(
    ("location", "text"),
    [("camera a, key source", "f.yaml: camera a, key source: boom"), ("", "f.yaml: boom")],
)
def test_problem_text(location: str, text: str) -> None:
    assert str(ConfigProblem("f.yaml", location, "boom")) == text


# Files -------------------------------------------------------------------------------------


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  id: a\ncameras: [\n  - id: b\n    source: : :\n")
    with pytest.raises(ConfigError) as caught:
        load_site_config(path)
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert problem.location.startswith("line ")
    assert ", column " in problem.location
    assert "not valid YAML" in problem.message


def test_yaml_error_line_is_one_based(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  id: a\n\tbad: tab\n")
    with pytest.raises(ConfigError) as caught:
        load_site_config(path)
    assert caught.value.problems[0].location.startswith("line 3,")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_site_config(path)
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert problem.message.startswith("cannot read")


def test_a_folder_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_site_config(tmp_path)


# Sources -----------------------------------------------------------------------------------


def test_relative_source_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "configs" / "sites"
    folder.mkdir(parents=True)
    config = load_site_config(write(folder, site(source="../clips/a.mp4")))
    resolved = config.resolve_source(config.cameras[0])
    assert isinstance(resolved, str)
    assert Path(resolved).resolve() == (tmp_path / "configs" / "clips" / "a.mp4").resolve()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (0, 0),
        ("0", 0),
        (" 2 ", 2),
        ("rtsp://u:p@10.0.0.5/stream1", "rtsp://u:p@10.0.0.5/stream1"),
        ("http://h/x.mjpg", "http://h/x.mjpg"),
        ("/abs/clip.mp4", "/abs/clip.mp4"),
        ("clip.mp4", os.fspath(Path("/cfg/clip.mp4"))),
    ],
)
def test_resolve_source(source: str | int, expected: str | int) -> None:
    assert resolve_source(source, Path("/cfg")) == expected


def test_device_index_string_in_yaml_becomes_int(tmp_path: Path) -> None:
    config = load_site_config(write(tmp_path, site(source="0")))
    assert config.resolve_source(config.cameras[0]) == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rtsp://user:s3cret@10.0.0.5/stream1", "rtsp://user:***@10.0.0.5/stream1"),
        ("rtsp://user:s3cret@10.0.0.5:554/s?x=1", "rtsp://user:***@10.0.0.5:554/s?x=1"),
        ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
        ("/videos/clip.mp4", "/videos/clip.mp4"),
        (3, "3"),
    ],
)
def test_redact_url(source: str | int, expected: str) -> None:
    redacted = redact_url(source)
    assert redacted == expected
    assert "s3cret" not in redacted


# Shipped configs ---------------------------------------------------------------------------

# site configs: every YAML under configs/ except the server's dispatch files (tested apart)
SHIPPED = sorted(
    p for p in (REPO / "configs").rglob("*.yaml") if "dispatch" not in p.relative_to(REPO).parts
)


def test_there_are_shipped_configs() -> None:
    assert len(SHIPPED) >= 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PASSWORD", "x")
    monkeypatch.setenv("ZHIZHI_BENCH_CLIPS", "/bench-clips")  # configs/bench (zhizhi bench clips)
    config = load_site_config(path)
    assert isinstance(config, SiteConfig)
    assert config.config_dir == path.parent.resolve()
    for camera in config.cameras:
        for rule in camera.rules:
            assert camera.zone(rule.zone).id == rule.zone


# Left-object size on a fire lane: metres on a zone with a lane width, or a share of the frame


def sized(zone: dict[str, Any] | None = None, **rule: Any) -> dict[str, Any]:
    """The minimal site with keys added to its zone and to its fire_lane rule."""
    return site(
        zones=[{"id": "lane", "polygon": SQUARE, **(zone or {})}],
        rules=[{"id": "lane-blocked", "type": "fire_lane", "zone": "lane", **rule}],
    )


@pytest.mark.parametrize(
    ("raw", "area", "size_m", "width_m"),
    [
        (sized(), None, None, None),
        (sized({"lane_width_m": 4}), None, None, 4.0),
        (sized({"lane_width_m": 6.5}, min_object_size_m=0.5), None, 0.5, 6.5),
        (sized({"lane_width_m": 4}, min_object_area=0.002), 0.002, None, 4.0),
        (sized(min_object_area=0.01), 0.01, None, None),
    ],
)
def test_object_size_keys_that_are_valid(
    raw: dict[str, Any], area: float | None, size_m: float | None, width_m: float | None
) -> None:
    camera = parse_site_config(raw).cameras[0]
    rule = camera.rules[0]
    assert isinstance(rule, FireLaneRuleConfig)
    assert (rule.min_object_area, rule.min_object_size_m) == (area, size_m)
    assert camera.zones[0].lane_width_m == width_m


@pytest.mark.parametrize(
    ("raw", "location", "words"),
    [
        (
            sized(min_object_size_m=0.3),
            "camera cam-1, rule lane-blocked, key min_object_size_m",
            "set lane_width_m on zone lane",
        ),
        (
            sized({"lane_width_m": 4}, min_object_size_m=0.3, min_object_area=0.002),
            "camera cam-1, rule lane-blocked, key min_object_size_m",
            "both set",
        ),
        (
            sized({"lane_width_m": 4}, min_object_size_m=4),
            "camera cam-1, rule lane-blocked, key min_object_size_m",
            "not less than the lane's width",
        ),
        (
            sized({"lane_width_m": 4}, min_object_size_m=0),
            "camera cam-1, rule lane-blocked, key min_object_size_m",
            "greater than 0",
        ),
        (sized({"lane_width_m": 0}), "camera cam-1, zone lane, key lane_width_m", "greater than 0"),
        (
            sized({"lane_width_m": 400}),  # centimetres
            "camera cam-1, zone lane, key lane_width_m",
            "less than or equal to 100",
        ),
        (
            sized({"lane_width_m": "wide"}),
            "camera cam-1, zone lane, key lane_width_m",
            "valid number",
        ),
    ],
)
def test_object_size_problems_are_located(raw: dict[str, Any], location: str, words: str) -> None:
    found = [(p.location, p.message) for p in problems_of(raw)]
    assert len(found) == 1, found
    assert found[0][0] == location and words in found[0][1], found


def test_every_object_size_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    """Two cameras, each with its own mistake, and a bad polygon beside them: all named."""
    raw = sized(min_object_size_m=0.3)
    second = {
        "id": "cam-2",
        "source": 1,
        "zones": [
            {"id": "walk", "polygon": SQUARE, "lane_width_m": 3},
            {"id": "bad", "polygon": [[0.1, 0.1], [0.2, 0.2]]},
        ],
        "rules": [
            {
                "id": "walk-blocked",
                "type": "fire_lane",
                "zone": "walk",
                "min_object_size_m": 0.4,
                "min_object_area": 0.001,
            }
        ],
    }
    raw["cameras"].append(second)
    with pytest.raises(ConfigError) as caught:
        load_site_config(write(tmp_path, raw))
    found = sorted(p.location for p in caught.value.problems)
    assert found == [
        "camera cam-1, rule lane-blocked, key min_object_size_m",
        "camera cam-2, rule walk-blocked, key min_object_size_m",
        "camera cam-2, zone bad, key polygon",
    ], caught.value.problems
