"""The promotion gate: a candidate model replaces the current one only when no event type's
event-level results regress beyond the configured margins. Pure: reports in, decision out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field


class GateConfig(BaseModel):
    """Margins (`--gate gate.yaml`); a drop of exactly the margin still passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_recall_drop: float = Field(default=0.0, ge=0, description="Per event type, absolute")
    max_precision_drop: float = Field(default=0.05, ge=0, description="Per event type, absolute")
    max_extra_false_alarms: int = Field(default=0, ge=0, description="Per event type, in total")
    max_latency_increase_s: float = Field(
        default=2.0, ge=0, description="Median alert latency, per event type"
    )
    max_map50_drop: float | None = Field(
        default=None, ge=0, description="Detector mAP50 on the val split; None: not gated"
    )


def load_gate(path: Path | None) -> GateConfig:
    if path is None:
        return GateConfig()
    return GateConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


class GateDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    promoted: bool
    reasons: list[str]


def _drop(current: float | None, candidate: float | None) -> float:
    """How much worse the candidate is (positive = worse); a missing value counts as 0 (a type
    the candidate no longer reports at all has lost its recall)."""
    return (current or 0.0) - (candidate or 0.0)


def detector_figures(evaluation: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """The detector figures the gate compares, from an `evaluation.json`: mAP50 over the
    classes both models were measured on when it has them (a COCO model has no `garbage_bag`,
    so its own mAP covers other classes than the candidate's), else each model's own mAP50;
    None without detector figures."""
    models = evaluation["models"]
    if not all("detector" in models.get(role, {}) for role in ("current", "candidate")):
        return None
    shared = evaluation.get("shared_classes")
    if shared is not None:
        return {role: {"map50": shared["map"][role]["ap50"]} for role in ("current", "candidate")}
    return {role: models[role]["detector"] for role in ("current", "candidate")}


def judge(
    current: dict[str, Any],
    candidate: dict[str, Any],
    gate: GateConfig,
    detector: dict[str, dict[str, float]] | None = None,
) -> GateDecision:
    """Compare two `zhizhi eval` reports' per-type results (and optionally detector metrics
    `{"current": {...}, "candidate": {...}}`); every regression is one reason."""
    failures: list[str] = []
    notes: list[str] = []
    types = sorted(set(current.get("types", {})) | set(candidate.get("types", {})))
    if not types:
        failures.append("no event-level results to compare: evaluate on labelled clips first")
    empty: dict[str, Any] = {}
    for name in types:
        old = current.get("types", {}).get(name, empty)
        new = candidate.get("types", {}).get(name, empty)
        checks = [
            ("recall", _drop(old.get("recall"), new.get("recall")), gate.max_recall_drop),
            (
                "false alarms",
                float(new.get("false_alarms", 0) - old.get("false_alarms", 0)),
                float(gate.max_extra_false_alarms),
            ),
        ]
        # precision is undefined for a model that raised no alert of the type: its misses are
        # judged by recall, its (absent) false alarms need no second count
        old_precision, new_precision = old.get("precision"), new.get("precision")
        if old_precision is not None and new_precision is not None:
            checks.append(("precision", old_precision - new_precision, gate.max_precision_drop))
        old_latency, new_latency = old.get("median_latency_s"), new.get("median_latency_s")
        if old_latency is not None and new_latency is not None:
            checks.append(
                ("median latency s", new_latency - old_latency, gate.max_latency_increase_s)
            )
        for what, worse_by, margin in checks:
            line = f"{name}: {what} worse by {worse_by:+.3f} (margin {margin:.3f})"
            (failures if worse_by > margin + 1e-9 else notes).append(line)
    if gate.max_map50_drop is not None and detector is not None:
        drop = _drop(detector["current"].get("map50"), detector["candidate"].get("map50"))
        line = f"detector: mAP50 worse by {drop:+.4f} (margin {gate.max_map50_drop:.4f})"
        (failures if drop > gate.max_map50_drop + 1e-9 else notes).append(line)
    if failures:
        return GateDecision(promoted=False, reasons=[f"REGRESSION {f}" for f in failures])
    return GateDecision(promoted=True, reasons=[f"ok {n}" for n in notes])
