"""The model registry (models/registry.yaml): which ONNX files exist, how to check and find them.

The registry is the single list of deployable models. Training writes it (`register_model`),
the edge reads it (`load_registry`), verifies each file against its sha256 and finds it on disk
with `resolve_model_path`: first in `ZHIZHI_MODEL_DIR` (contract section 1), then in
`~/.cache/zhizhi/models`, then in `<repo>/models/weights`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.errors import ModelIntegrityError, ModelNotFoundError

logger = logging.getLogger(__name__)

Layout = Literal["yolov8", "yolov8-pose", "yolox", "centerface"]
"""Output layout: `yolov8` (also YOLO11) `(1, 4+nc, N)`; `yolov8-pose` `(1, 4+nc+3K, N)`;
`yolox` `(1, N, 5+nc)` raw head; `centerface` four maps at stride 4 (face heatmap, log sizes,
offsets, landmarks; edge.analysis.detect.centerface)."""
Task = Literal["detect", "pose", "faces"]
ONNX_METADATA: Literal["onnx-metadata"] = "onnx-metadata"
"""`labels` value meaning: read the class names from the ONNX file's `names` metadata."""

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY_ENV = "ZHIZHI_MODEL_REGISTRY"
MODEL_DIR_ENV = "ZHIZHI_MODEL_DIR"
FETCH_HINT = "python models/fetch_models.py (needs internet; see models/README.md)"
_HEADER = (
    "# Zhizhi model registry: the single list of deployable models (see models/README.md).\n"
    "# Written by edge.runtime.models.register_model; hand edits are fine, comments are not kept.\n"
)


class ModelSpec(BaseModel):
    """One deployable model: the file, its checksum and how to run and decode it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="The registry key")
    version: str = Field(min_length=1, description="Copied into every event's `model.version`")
    file: str = Field(description="Path of the ONNX file relative to a model folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    layout: Layout
    task: Task = "detect"
    input_wh: tuple[int, int] = Field(description="Network input width and height in pixels")
    labels: list[str] | Literal["onnx-metadata"] = Field(
        default=ONNX_METADATA, description="Class names by class id, or read from the ONNX file"
    )
    keypoints: int = Field(default=0, ge=0, description="Keypoints per detection (pose models)")
    licence: str = ""
    source: str = ""
    obtain: str = Field(default="", description="How to produce or download the file")
    trained_from: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    dataset_sha256: str | None = Field(
        default=None, description="sha256 of the manifest.json of the dataset it was trained on"
    )

    @field_validator("file")
    @classmethod
    def _relative_file(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"file must be a relative path inside a model folder, got {value!r}")
        return value

    @field_validator("input_wh")
    @classmethod
    def _stride_multiple(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) <= 0 or value[0] % 32 or value[1] % 32:
            raise ValueError(f"input_wh must be positive multiples of 32, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        pose = self.layout == "yolov8-pose"
        if pose != (self.task == "pose") or pose != (self.keypoints > 0):
            raise ValueError(
                f"layout {self.layout}, task {self.task} and keypoints {self.keypoints} disagree: "
                "pose models use layout yolov8-pose, task pose and keypoints > 0"
            )
        if (self.layout == "centerface") != (self.task == "faces"):
            raise ValueError(
                f"layout {self.layout} and task {self.task} disagree: face models use layout "
                "centerface and task faces"
            )
        if self.layout == "yolox" and self.labels == ONNX_METADATA:
            raise ValueError("yolox ONNX files carry no class names: list the labels explicitly")
        return self


class ModelRegistry(BaseModel):
    """All registered models by name, and the one a camera gets when its config names none."""

    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True, description="Where it was read from")

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            models = {
                key: {"name": key, **entry} if isinstance(entry, dict) else entry
                for key, entry in data["models"].items()
            }
            data = {**data, "models": models}
        return data

    @model_validator(mode="after")
    def _keys_match(self) -> ModelRegistry:
        for key, spec in self.models.items():
            if spec.name != key:
                raise ValueError(f"model {key}: entry says name {spec.name!r}")
        if self.default is not None and self.default not in self.models:
            raise ValueError(f"default {self.default!r} is not one of {sorted(self.models)}")
        return self

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            where = self.path or "the registry"
            raise ModelNotFoundError(
                f"model {name!r} is not in {where}; known: {', '.join(sorted(self.models))}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.models


class _RegistryDumper(yaml.SafeDumper):
    """Short lists of numbers (`input_wh`) on one line, other lists one item a line."""


def _represent_list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    flow = all(isinstance(item, int | float) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_RegistryDumper.add_representer(list, _represent_list)


def default_registry_path() -> Path:
    """`$ZHIZHI_MODEL_REGISTRY` when set, else `models/registry.yaml` of this repository."""
    override = os.environ.get(REGISTRY_ENV)
    return Path(override) if override else REPO_ROOT / "models" / "registry.yaml"


def load_registry(path: Path | str | None = None) -> ModelRegistry:
    """Read and validate a registry file (default: `default_registry_path()`).

    Raises:
        ModelNotFoundError: the file does not exist.
        pydantic.ValidationError: an entry is malformed; every problem is listed.
    """
    registry_path = Path(path) if path is not None else default_registry_path()
    try:
        text = registry_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelNotFoundError(f"model registry {registry_path} does not exist") from None
    raw = yaml.safe_load(text) or {}
    return ModelRegistry.model_validate({**raw, "path": registry_path})


def save_registry(registry: ModelRegistry, path: Path | str | None = None) -> Path:
    """Write the registry as YAML (atomically) and return the path written."""
    target = Path(path) if path is not None else registry.path or default_registry_path()
    models = {
        key: spec.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)
        for key, spec in registry.models.items()
    }
    body = yaml.dump(
        {"default": registry.default, "models": models},
        Dumper=_RegistryDumper,
        sort_keys=False,
        width=1000,
        allow_unicode=True,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(_HEADER + body, encoding="utf-8")
    temporary.replace(target)
    return target


def register_model(
    spec: ModelSpec, path: Path | str | None = None, *, make_default: bool = False
) -> ModelRegistry:
    """Add or replace `spec` in the registry at `path` (created if missing) and save it."""
    target = Path(path) if path is not None else default_registry_path()
    registry = load_registry(target) if target.exists() else ModelRegistry(path=target)
    models = {**registry.models, spec.name: spec}
    default = spec.name if make_default or registry.default is None else registry.default
    updated = ModelRegistry(default=default, models=models, path=target)
    save_registry(updated, target)
    logger.info("Registered model %s (%s) in %s", spec.name, spec.sha256[:12], target)
    return updated


def model_search_dirs() -> list[Path]:
    """Folders searched for model files, in order: `$ZHIZHI_MODEL_DIR`, user cache, repo."""
    dirs = [Path.home() / ".cache" / "zhizhi" / "models", REPO_ROOT / "models" / "weights"]
    override = os.environ.get(MODEL_DIR_ENV)
    return [Path(override), *dirs] if override else dirs


def resolve_model_path(spec: ModelSpec, search_dirs: list[Path] | None = None) -> Path:
    """The first existing `<dir>/<spec.file>` over `model_search_dirs()`.

    Raises:
        ModelNotFoundError: naming every folder searched and how to obtain the file.
    """
    dirs = model_search_dirs() if search_dirs is None else search_dirs
    for folder in dirs:
        candidate = folder / spec.file
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(folder) for folder in dirs)
    how = spec.obtain or FETCH_HINT
    raise ModelNotFoundError(
        f"model {spec.name}: file {spec.file} not found in {searched} "
        f"(set {MODEL_DIR_ENV} to the folder holding it); to obtain it: {how}"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model_file(spec: ModelSpec, path: Path) -> None:
    """Refuse a file whose sha256 is not the registered one.

    Raises:
        ModelIntegrityError: one line naming the file, the expected and the actual hash.
    """
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ModelIntegrityError(
            f"model {spec.name}: {path} has sha256 {actual}, the registry expects {spec.sha256}"
        )


def model_status(registry: ModelRegistry, search_dirs: list[Path] | None = None) -> dict[str, str]:
    """Per model name, one line: `ok: PATH`, `missing: ...` or `wrong file: ...` (sha256)."""
    status = {}
    for name, spec in registry.models.items():
        try:
            path = resolve_model_path(spec, search_dirs)
            verify_model_file(spec, path)
        except (ModelNotFoundError, ModelIntegrityError) as error:
            kind = "missing" if isinstance(error, ModelNotFoundError) else "wrong file"
            status[name] = f"{kind}: {error}"
        else:
            status[name] = f"ok: {path}"
    return status
