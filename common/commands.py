"""Commands from the server side to an edge on `zhizhi/v1/{site}/{edge}/cmd` (contract
section 4), QoS 1, JSON. `command` says which; an edge ignores commands it does not know.

    {"command": "model.rollout", "command_id": "...", "model": {...}, "url": "http://..."}
    {"command": "model.rollback", "command_id": "...", "name": "yolov8n-640"}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class CommandModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ModelFile(CommandModel):
    """What an edge needs to fetch, check and run a model (a registry entry, less the docs)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str = Field(min_length=1)
    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    layout: Literal["yolov8", "yolov8-pose", "yolox"] = "yolov8"
    task: Literal["detect", "pose"] = "detect"
    input_wh: tuple[int, int]
    labels: list[str] | Literal["onnx-metadata"] = "onnx-metadata"
    keypoints: int = Field(default=0, ge=0)


class RolloutCommand(CommandModel):
    """Download `url`, check the sha256, load and warm the model, then swap it in for every
    camera whose detector runs the model of that name."""

    command: Literal["model.rollout"] = "model.rollout"
    command_id: str = Field(min_length=1, max_length=128)
    model: ModelFile
    url: str = Field(description="GET this (bearer token of role edge) for the ONNX file")
    replaces: str | None = Field(
        default=None, description="Registry name the new model takes over from (default: same)"
    )


class RollbackCommand(CommandModel):
    """Go back to the model that ran before the last roll-out of `name`."""

    command: Literal["model.rollback"] = "model.rollback"
    command_id: str = Field(min_length=1, max_length=128)
    name: str


Command = Annotated[RolloutCommand | RollbackCommand, Field(discriminator="command")]
_COMMAND: TypeAdapter[RolloutCommand | RollbackCommand] = TypeAdapter(Command)


def parse_command(payload: bytes | bytearray | str) -> RolloutCommand | RollbackCommand:
    """Raises `pydantic.ValidationError` for a malformed or unknown command."""
    return _COMMAND.validate_json(payload)
