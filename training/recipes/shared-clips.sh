#!/usr/bin/env bash
# The detector retrained on the shared clips' labels, end to end (docs/training.md, "Recipe:
# the shared-clips model"): import the CVAT labels in training/labels, build the dataset split
# by clip, fine-tune YOLOv8n on the CPU, export to ONNX, evaluate against the COCO model on the
# held-out clips, and apply the promotion gate.
#
#   training/recipes/shared-clips.sh            # from the repository root
#
# Environment (defaults in brackets): ZHIZHI_CLIPS_DIR [../shared/clips], ZHIZHI_MODEL_DIR
# [../shared/models], OUT [runs/shared-clips], NAME [shared-clips-416], VERSION [1],
# EPOCHS [20], IMGSZ [416], BATCH [16], FREEZE [10], DEVICE [cpu], THREADS [2],
# REGISTRY: the registry a passing model is promoted into [OUT/registry.yaml, a copy of
# models/registry.yaml; give models/registry.yaml to promote for real], MODEL_OUT: where
# the ONNX file goes [OUT/models; ~/.cache/zhizhi/models is where edges look].
# Nothing is written outside OUT unless REGISTRY says so.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CLIPS=${ZHIZHI_CLIPS_DIR:-$REPO/../shared/clips}
MODELS=${ZHIZHI_MODEL_DIR:-$REPO/../shared/models}
OUT=${OUT:-runs/shared-clips}
NAME=${NAME:-shared-clips-416}
VERSION=${VERSION:-1}
EPOCHS=${EPOCHS:-20}
IMGSZ=${IMGSZ:-416}
BATCH=${BATCH:-16}
FREEZE=${FREEZE:-10}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-2}
REGISTRY=${REGISTRY:-$OUT/registry.yaml}
MODEL_OUT=${MODEL_OUT:-$OUT/models}
ZHIZHI=${ZHIZHI:-$REPO/.venv/bin/zhizhi}
LABELS=training/labels
# Held out (val split and event-level report): a littering scene the model never saw, the
# motorway, and the last car of the top-down car park (its first three cars train).
VAL_GROUPS=(littering_bag_stair_landing traffic_motorway_nostop
            parkinglot_topdown_cars_passing.pass-4)

export ZHIZHI_MODEL_DIR=$MODELS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT/labels"
[ -f "$REGISTRY" ] || cp models/registry.yaml "$REGISTRY"
log() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

log "1. import the CVAT labels"
for xml in "$LABELS"/*.xml; do
    stem=$(basename "$xml" .xml)
    "$ZHIZHI" data import cvat-video "$xml" --clip "$CLIPS/${stem%%.*}.mp4" \
        --mapping "$LABELS/mapping.yaml" --group "$stem" --out "$OUT/labels/$stem.json"
done

log "2. build the dataset, split by clip"
rm -rf "$OUT/dataset"
"$ZHIZHI" data build $(for f in "$OUT"/labels/*.json; do printf -- '--labels %s ' "$f"; done) \
    $(for g in "${VAL_GROUPS[@]}"; do printf -- '--val-group %s ' "$g"; done) \
    --out "$OUT/dataset" --every-s 0.2 --duplicate-distance 4 --seed 0

log "3. fine-tune (backbone frozen, class heads carried over from COCO)"
rm -rf "$OUT/train/$NAME"
start=$(date +%s)
"$ZHIZHI" train --data "$OUT/dataset/data.yaml" --base "$MODELS/yolov8n.pt" \
    --epochs "$EPOCHS" --imgsz "$IMGSZ" --batch "$BATCH" --device "$DEVICE" --workers 0 \
    --freeze "$FREEZE" --head-from garbage_bag=handbag --no-val-each-epoch --seed 0 \
    --runs-dir "$OUT/train" --name "$NAME"
echo "training took $(( $(date +%s) - start )) s"

log "4. export to ONNX, verified with the edge's detector"
"$ZHIZHI" models export --run "$OUT/train/$NAME" --name "$NAME" --version "$VERSION" \
    --registry "$OUT/candidates.yaml" --model-dir "$MODEL_OUT" --int8 never

log "5. evaluate against the COCO model on the held-out clips"
"$ZHIZHI" models evaluate --candidate "$NAME" --candidate-registry "$OUT/candidates.yaml" \
    --current yolov8n-640 --data "$OUT/dataset/data.yaml" \
    --config configs/eval/shared-clips.yaml --labels "$LABELS/heldout-events.yaml" \
    --clips "$CLIPS" --model-dir "$MODEL_OUT" --out "$OUT/eval"

log "5b. detector figures per held-out clip (the val split is mostly motorway)"
for group in "${VAL_GROUPS[@]}"; do
    subset=$OUT/val-$group
    rm -rf "$subset"; mkdir -p "$subset/images/val" "$subset/labels/val"
    for image in "$OUT/dataset/images/val/${group}"_*.jpg; do
        stem=$(basename "$image" .jpg)
        ln -s "$(realpath "$image")" "$subset/images/val/"
        ln -s "$(realpath "$OUT/dataset/labels/val/$stem.txt")" "$subset/labels/val/"
    done
    "$REPO/.venv/bin/python" -c "import sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
data.update(path=sys.argv[2], train='images/val', val='images/val')
yaml.safe_dump(data, open(sys.argv[2] + '/data.yaml', 'w'))" "$OUT/dataset/data.yaml" "$(realpath "$subset")"
    "$ZHIZHI" models evaluate --candidate "$NAME" --candidate-registry "$OUT/candidates.yaml" \
        --current yolov8n-640 --data "$subset/data.yaml" --model-dir "$MODEL_OUT" \
        --out "$OUT/eval-$group"
done

log "6. the promotion gate"
"$ZHIZHI" models promote --evaluation "$OUT/eval/evaluation.json" \
    --candidate-registry "$OUT/candidates.yaml" --gate "$LABELS/gate.yaml" \
    --registry "$REGISTRY" || echo "not promoted (see $OUT/eval/promotion.json)"

log "7. the garbage_pile rule with the new model as its classifier, and without"
cp models/registry.yaml "$OUT/classifier-registry.yaml"
"$REPO/.venv/bin/python" -c "import sys
from edge.runtime.models import load_registry, register_model
register_model(load_registry(sys.argv[1])[sys.argv[2]], sys.argv[3])" \
    "$OUT/candidates.yaml" "$NAME" "$OUT/classifier-registry.yaml"
for file in "$MODELS"/*.onnx; do   # one model folder holds the new model and the current ones
    [ -e "$MODEL_OUT/$(basename "$file")" ] || ln -s "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")" "$MODEL_OUT/"
done
for config in shared-clips shared-clips-classifier shared-clips-classifier-require; do
    ZHIZHI_MODEL_REGISTRY=$OUT/classifier-registry.yaml ZHIZHI_MODEL_DIR=$MODEL_OUT \
        "$ZHIZHI" eval --config "configs/eval/$config.yaml" \
        --labels tests/data/labels/garbage_pile.yaml --clips "$CLIPS" \
        --out "$OUT/garbage-$config.json" || true
done
# the events themselves, with what the model found in each pile (details.contents)
for camera in stair-landing:littering_bag_stair_landing sidewalk:littering_bag_sidewalk; do
    ZHIZHI_MODEL_REGISTRY=$OUT/classifier-registry.yaml ZHIZHI_MODEL_DIR=$MODEL_OUT \
        "$ZHIZHI" edge replay --config configs/eval/shared-clips-classifier.yaml \
        --camera "${camera%%:*}" --source "$CLIPS/${camera##*:}.mp4" --no-progress \
        --out "$OUT/garbage-classifier-${camera%%:*}.jsonl" || true
done
