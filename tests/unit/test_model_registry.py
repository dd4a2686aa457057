"""The model registry: loading, finding files, refusing files that are not the registered ones."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.analysis.detect.onnx import OnnxDetector, parse_names_metadata, select_providers
from edge.errors import EdgeError, ModelIntegrityError, ModelNotFoundError
from edge.runtime.models import (
    MODEL_DIR_ENV,
    REGISTRY_ENV,
    REPO_ROOT,
    ModelSpec,
    default_registry_path,
    file_sha256,
    load_registry,
    model_search_dirs,
    model_status,
    register_model,
    resolve_model_path,
    verify_model_file,
)

SHIPPED = {
    "yolov8n-640": "cd5e6c118b53f829dd0e3577087beaa36c744c1ad98be80ffd8782403c4a7c3d",
    "yolov8n-320": "7dc7621284481cf6ced35dc14dea7e10980617d4c4613c84ed3a3b0ea94259f2",
    "yolov8n-pose-640": "68736e8fefa33668a24bd3ca1732d372bba70a53c67879ccdea4f67bf81e3fde",
    "yolov8n-pose-320": "96c99be06d564e7eda7ccd4327cf2ded5054d7acc4a1624c79f9633a60d1dd3e",
    "yolox-nano-416": "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
    "centerface-640": "6c033f3f717b111ce49f832c9db08c13890a758b1a00a0b6690093d9db45570e",
}


def make_spec(**overrides: object) -> ModelSpec:
    fields: dict[str, object] = {
        "name": "tiny",
        "version": "1",
        "file": "tiny.onnx",
        "sha256": "0" * 64,
        "layout": "yolov8",
        "input_wh": (320, 320),
        "obtain": "python models/fetch_models.py tiny",
    }
    return ModelSpec.model_validate({**fields, **overrides})


@pytest.fixture
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME in tmp_path (so ~/.cache is empty) and no ZHIZHI_MODEL_DIR."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    return tmp_path


def put_file(folder: Path, name: str, content: bytes = b"onnx bytes") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


# the shipped registry


def test_shipped_registry_lists_the_six_models_with_their_checksums(isolated_dirs: Path) -> None:
    registry = load_registry()
    assert registry.path == REPO_ROOT / "models" / "registry.yaml"
    assert {name: spec.sha256 for name, spec in registry.models.items()} == SHIPPED
    assert registry.default == "yolov8n-640"
    assert registry["yolov8n-320"].input_wh == (320, 320)
    assert registry["yolov8n-pose-640"].keypoints == 17
    assert (registry["yolov8n-pose-320"].input_wh, registry["yolov8n-pose-320"].task) == (
        (320, 320),
        "pose",
    )
    faces = registry["centerface-640"]
    assert (faces.layout, faces.task, faces.input_wh) == ("centerface", "faces", (640, 640))
    assert faces.licence.startswith("MIT")


def test_shipped_yolox_entry_lists_coco_80_labels(isolated_dirs: Path) -> None:
    spec = load_registry()["yolox-nano-416"]
    assert spec.layout == "yolox"
    assert isinstance(spec.labels, list)
    assert len(spec.labels) == 80
    assert (spec.labels[0], spec.labels[2], spec.labels[7], spec.labels[79]) == (
        "person",
        "car",
        "truck",
        "toothbrush",
    )


def test_every_shipped_entry_says_how_to_obtain_it(isolated_dirs: Path) -> None:
    for spec in load_registry().models.values():
        assert spec.obtain.startswith("python models/fetch_models.py")
        assert spec.licence
        assert spec.source


def test_registry_path_can_be_overridden(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = isolated_dirs / "other.yaml"
    register_model(make_spec(), target)
    monkeypatch.setenv(REGISTRY_ENV, str(target))
    assert default_registry_path() == target
    assert list(load_registry().models) == ["tiny"]


def test_missing_registry_file_is_reported(isolated_dirs: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"nowhere\.yaml does not exist"):
        load_registry(isolated_dirs / "nowhere.yaml")


def test_unknown_model_name_lists_the_known_ones(isolated_dirs: Path) -> None:
    with pytest.raises(
        ModelNotFoundError, match=r"'yolov9' is not in .*known: centerface-640, yolov8n-320"
    ):
        load_registry()["yolov9"]


# entries are validated


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sha256": "abc"}, "sha256"),
        ({"file": "../escape.onnx"}, "relative path"),
        ({"input_wh": (300, 300)}, "multiples of 32"),
        ({"layout": "yolox"}, "list the labels"),
        ({"layout": "yolov8-pose"}, "disagree"),
        ({"name": "Bad Name"}, "name"),
    ],
)
def test_malformed_entries_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_spec(**overrides)


def test_registry_entry_named_differently_from_its_key_is_refused(isolated_dirs: Path) -> None:
    path = isolated_dirs / "registry.yaml"
    path.write_text(
        "models:\n  a:\n    name: b\n    version: '1'\n    file: a.onnx\n"
        f"    sha256: '{'0' * 64}'\n    layout: yolov8\n    input_wh: [320, 320]\n"
    )
    with pytest.raises(ValidationError, match="entry says name 'b'"):
        load_registry(path)


# register_model


def test_register_model_adds_then_updates_and_keeps_the_default(isolated_dirs: Path) -> None:
    path = isolated_dirs / "models" / "registry.yaml"
    register_model(make_spec(name="first"), path)
    register_model(make_spec(name="second", metrics={"map50": 0.5}), path)
    registry = register_model(make_spec(name="second", sha256="1" * 64), path)

    reloaded = load_registry(path)
    assert reloaded == registry
    assert list(reloaded.models) == ["first", "second"]
    assert reloaded.default == "first"
    assert reloaded["second"].sha256 == "1" * 64
    assert reloaded["second"].metrics == {}


def test_register_model_can_make_the_new_model_the_default(isolated_dirs: Path) -> None:
    path = isolated_dirs / "registry.yaml"
    register_model(make_spec(name="old"), path)
    register_model(make_spec(name="new", labels=["bin", "bag"]), path, make_default=True)
    registry = load_registry(path)
    assert registry.default == "new"
    assert registry["new"].labels == ["bin", "bag"]


# finding files


def test_model_dir_env_is_searched_first(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec()
    put_file(isolated_dirs / "home" / ".cache" / "zhizhi" / "models", spec.file)
    wanted = put_file(isolated_dirs / "env-dir", spec.file)
    monkeypatch.setenv(MODEL_DIR_ENV, str(isolated_dirs / "env-dir"))

    assert model_search_dirs()[0] == isolated_dirs / "env-dir"
    assert resolve_model_path(spec) == wanted


def test_user_cache_is_searched_without_the_env(isolated_dirs: Path) -> None:
    spec = make_spec()
    wanted = put_file(isolated_dirs / "home" / ".cache" / "zhizhi" / "models", spec.file)
    assert resolve_model_path(spec) == wanted


def test_missing_model_error_names_every_place_searched_and_how_to_fetch(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(isolated_dirs / "env-dir"))
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(make_spec())
    message = str(caught.value)
    assert "\n" not in message
    for place in model_search_dirs():
        assert str(place) in message
    assert str(REPO_ROOT / "models" / "weights") in message
    assert "python models/fetch_models.py tiny" in message
    assert isinstance(caught.value, EdgeError)


# checksums


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = put_file(tmp_path, "x.onnx", b"x" * 3_000_000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_registered_hash_is_accepted(tmp_path: Path) -> None:
    path = put_file(tmp_path, "tiny.onnx")
    verify_model_file(make_spec(sha256=file_sha256(path)), path)


def test_sha256_mismatch_is_refused_before_loading(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_path = isolated_dirs / "registry.yaml"
    path = put_file(isolated_dirs / "weights", "tiny.onnx", b"not the registered model")
    actual = hashlib.sha256(b"not the registered model").hexdigest()
    register_model(make_spec(sha256="f" * 64), registry_path)
    monkeypatch.setenv(MODEL_DIR_ENV, str(isolated_dirs / "weights"))

    spec = load_registry(registry_path)["tiny"]
    with pytest.raises(ModelIntegrityError) as caught:
        OnnxDetector.load(spec)

    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert "f" * 64 in message
    assert actual in message


def test_model_status_tells_found_missing_and_wrong_files(isolated_dirs: Path) -> None:
    registry_path = isolated_dirs / "registry.yaml"
    folder = isolated_dirs / "weights"
    good = put_file(folder, "good.onnx", b"good")
    put_file(folder, "bad.onnx", b"bad")
    register_model(
        make_spec(name="good", file="good.onnx", sha256=file_sha256(good)), registry_path
    )
    register_model(make_spec(name="bad", file="bad.onnx", sha256="e" * 64), registry_path)
    register_model(make_spec(name="gone", file="gone.onnx"), registry_path)

    status = model_status(load_registry(registry_path), [folder])

    assert status["good"] == f"ok: {good}"
    assert status["bad"].startswith("wrong file: ")
    assert status["gone"].startswith("missing: ")


# onnxruntime set-up helpers


def test_providers_default_to_the_preference_order() -> None:
    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert select_providers((), available) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_configured_providers_are_filtered_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    available = ["CPUExecutionProvider", "OpenVINOExecutionProvider"]
    with caplog.at_level(logging.WARNING):
        chosen = select_providers(["CUDAExecutionProvider", "OpenVINOExecutionProvider"], available)
    assert chosen == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert "CUDAExecutionProvider" in caplog.text


def test_no_configured_provider_available_falls_back_to_cpu() -> None:
    assert select_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]


def test_names_metadata_is_parsed_into_a_list_by_class_id() -> None:
    assert parse_names_metadata("{0: 'person', 1: 'bicycle', 2: 'car'}") == [
        "person",
        "bicycle",
        "car",
    ]
    assert parse_names_metadata("{0: 'a', 2: 'c'}") == ["a", "1", "c"]
    with pytest.raises(ValueError, match="dict of id to name"):
        parse_names_metadata("'person'")
