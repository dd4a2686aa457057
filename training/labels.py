"""The project's own label set: what every importer produces and the dataset builder reads.

A `LabelSet` is a list of sources (a video clip, or one still image), each with its labelled
frames and their boxes, normalised to the image and already mapped onto the project's
classes. Sources of the same `group` (one clip, or the frames extracted from one clip) always
land on the same side of the train/validation split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA = "zhizhi.labels/1"


class Box(BaseModel):
    """One labelled object: class index into `LabelSet.classes`, box normalised x1 y1 x2 y2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cls: int = Field(ge=0)
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)
    x2: float = Field(ge=0.0, le=1.0)
    y2: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError("box must have x1 < x2 and y1 < y2")
        return self


class LabelledFrame(BaseModel):
    """A frame of a clip (or the single frame 0 of an image) and every object on it; an empty
    `boxes` is a checked background frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    boxes: list[Box] = Field(default_factory=list)


class Source(BaseModel):
    """A video clip or a still image and its labelled frames."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["video", "image"]
    path: str = Field(min_length=1, description="Absolute, or relative to the label file")
    group: str = Field(min_length=1, description="Sources of one group are split together")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    frames: list[LabelledFrame] = Field(default_factory=list)


class LabelSet(BaseModel):
    """Everything one import produced (`zhizhi data import --out labels.json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_: Literal["zhizhi.labels/1"] = Field(default="zhizhi.labels/1", alias="schema")
    classes: list[str] = Field(min_length=1)
    sources: list[Source] = Field(default_factory=list)

    @model_validator(mode="after")
    def _class_ids(self) -> LabelSet:
        for source in self.sources:
            for frame in source.frames:
                for box in frame.boxes:
                    if box.cls >= len(self.classes):
                        raise ValueError(
                            f"{source.path} frame {frame.index}: class id {box.cls} but only "
                            f"{len(self.classes)} classes"
                        )
        return self

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(self.model_dump(mode="json", by_alias=True), ensure_ascii=False, indent=1),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> LabelSet:
        """Read a label file; relative source paths are made absolute against its folder."""
        labels = cls.model_validate_json(path.read_text(encoding="utf-8"))
        folder = path.resolve().parent
        sources = [
            s.model_copy(update={"path": str((folder / s.path).resolve())}) for s in labels.sources
        ]
        return labels.model_copy(update={"sources": sources})


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad or inconsistent label, with where it is."""

    file: str
    frame: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.frame is None else f"{self.file}: frame {self.frame}"
        return f"{where}: {self.message}"


class LabelProblems(Exception):
    """An import found bad labels; `problems` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} label problem(s)")
        self.problems = problems
