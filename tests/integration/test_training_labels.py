"""The labels kept in the repository (training/labels/*.xml) import cleanly with the real
`cvat-video` importer against the real shared clips, with the recipe's class mapping; and a
fine-tune's class heads start from the base model's (YOLOv8n's COCO head carried over)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.bench_int8 import TARGET_CLASSES
from training.importers import import_cvat_video, load_mapping
from training.preannotate import load_plan

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "training" / "labels"
XML_FILES = sorted(LABELS.glob("*.xml"))


def clip_of(xml: Path) -> str:
    return xml.stem.split(".")[0] + ".mp4"


def test_every_clip_of_the_plan_has_its_labels() -> None:
    plan = load_plan(LABELS / "plan.yaml")
    labelled = {clip_of(xml) for xml in XML_FILES}
    assert labelled == set(plan.clips)
    for clip, clip_plan in plan.clips.items():
        expected = {f"{Path(clip).stem}.{s}.xml" for s in clip_plan.segments} or {
            f"{Path(clip).stem}.xml"
        }
        assert expected <= {xml.name for xml in XML_FILES}, clip


@pytest.mark.parametrize("xml", XML_FILES, ids=[x.stem for x in XML_FILES])
def test_the_label_file_imports_without_a_problem(xml: Path, clips_dir: Path) -> None:
    mapping = load_mapping(LABELS / "mapping.yaml")
    result = import_cvat_video(xml, mapping, clips_dir / clip_of(xml))
    assert [str(p) for p in result.problems] == []
    (source,) = result.sources
    assert source.frames, "no labelled frame"
    boxes = [box for frame in source.frames for box in frame.boxes]
    for box in boxes:
        assert 0 <= box.x1 < box.x2 <= 1 and 0 <= box.y1 < box.y2 <= 1


def test_the_littering_clips_have_garbage_and_the_car_park_cars(clips_dir: Path) -> None:
    mapping = load_mapping(LABELS / "mapping.yaml")
    classes = mapping.classes

    def frames_with(xml: str, label: str) -> int:
        result = import_cvat_video(LABELS / xml, mapping, clips_dir / clip_of(LABELS / xml))
        (source,) = result.sources
        wanted = classes.index(label)
        return sum(any(b.cls == wanted for b in f.boxes) for f in source.frames)

    assert frames_with("littering_bag_sidewalk.xml", "garbage_bag") > 100
    assert frames_with("littering_bag_stair_landing.xml", "garbage_bag") > 100
    assert frames_with("parkinglot_topdown_cars_passing.passes-1-3.xml", "car") > 100
    assert frames_with("parkinglot_topdown_cars_passing.pass-4.xml", "car") > 20


def test_the_recipe_holds_out_groups_that_exist() -> None:
    script = (REPO / "training" / "recipes" / "shared-clips.sh").read_text()
    held_out = script.split("VAL_GROUPS=(", 1)[1].split(")", 1)[0].split()
    stems = {xml.stem for xml in XML_FILES}
    assert held_out and set(held_out) <= stems
    events = yaml.safe_load((LABELS / "heldout-events.yaml").read_text())
    assert {clip["file"] for clip in events["clips"]} <= {
        clip_of(LABELS / f"{g}.xml") for g in held_out
    }


def test_class_heads_are_carried_over_from_the_base(models_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import DetectionModel

    from training.train import carry_class_heads, head_rows
    from training.ultra import yolo

    base = yolo(models_dir / "yolov8n.pt").model.float().eval()
    base_detect = base.model[-1]
    base_names = [base.names[i] for i in sorted(base.names)]
    channels = tuple(branch[0].conv.weight.shape[1] for branch in base_detect.cv3)
    features = [torch.randn(1, c, 8, 8) for c in channels]

    def logits(detect: Detect, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [branch(x) for branch, x in zip(detect.cv3, feats, strict=True)]

    # as many classes as the base: the branch is copied exactly
    def new_head(classes: int) -> Detect:  # as the trainer builds it, from the base's yaml
        return DetectionModel(base.yaml, nc=classes, verbose=False).model[-1].eval()

    same = new_head(80)
    assert carry_class_heads(base_detect, same, {i: i for i in range(80)}) == len(channels)
    with torch.no_grad():
        for got, want in zip(logits(same, features), logits(base_detect, features), strict=True):
            assert torch.allclose(got, want, atol=1e-4)

    # ten classes: a narrower branch keeps the channels that matter to the kept rows, so the
    # kept classes' logits follow the base's closely (a fresh head's are unrelated)
    names = [*TARGET_CLASSES, "garbage_bag"]
    rows = head_rows(names, base_names, {"garbage_bag": "handbag"})
    assert len(rows) == 10
    small, fresh = new_head(10), new_head(10)
    carry_class_heads(base_detect, small, rows)
    with torch.no_grad():
        want = torch.cat(
            [x[:, list(rows.values())].flatten() for x in logits(base_detect, features)]
        )
        got = torch.cat([x.flatten() for x in logits(small, features)])
        untrained = torch.cat([x.flatten() for x in logits(fresh, features)])
    carried_error = (got - want).abs().mean()
    fresh_error = (untrained - want).abs().mean()
    assert torch.corrcoef(torch.stack([got, want]))[0, 1] > 0.8
    assert carried_error < 0.25 * fresh_error, (carried_error, fresh_error)
