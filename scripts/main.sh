#!/usr/bin/env bash
# Set everything up (idempotent) and run the main job on the embedded default data set:
# pre-train PIRL (rotation as the transform, memory bank, InfoNCE) on Fashion-MNIST (ResNet-18 at
# half width, 32 px, CPU-sized), then report weighted-kNN top-1/top-5 on the Fashion-MNIST test
# set for the PIRL backbone, for a randomly initialised backbone of the same architecture and for
# raw pixels, all with the same protocol.  About 13 min on 2 CPU cores once set up
# (configs/pirl/README.md, "Main job").
#   bash scripts/main.sh [CONFIG] [extra tools/train.py args]
# (PIRL with jigsaw, the paper's headline setting: bash scripts/main.sh
#  configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
CONFIG=${1:-configs/pirl/pirl-rotation_r18-w32_1xb64-6000it_fmnist.py}
shift || true
NAME=$(basename "$CONFIG" .py)
WORK_DIR=work_dirs/$NAME
PY=.venv/bin/python
t0=$SECONDS
$PY tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
CKPT=$(cat "$WORK_DIR/last_checkpoint")
echo "[main] pre-training took $((SECONDS - t0)) s; checkpoint $CKPT"
$PY tools/extract_backbone.py "$CKPT" "$WORK_DIR/backbone.pth"
$PY tools/knn_eval.py "$CONFIG" "$WORK_DIR/backbone.pth" --baseline --pixels --out "$WORK_DIR/knn.json"
echo "[main] done in $((SECONDS - t0)) s; kNN results in $WORK_DIR/knn.json"
