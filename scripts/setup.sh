#!/usr/bin/env bash
# One-time, idempotent set-up of mmssl_ext on a fresh Debian machine (Python 3.11):
#   .venv/ with torch 2.14.1, torchvision 0.29.1, mmcv 2.1.0 (built with ops, cached outside the
#   repo), mmengine, mmpretrain, mmdet, faiss-cpu, pytest and mmssl_ext itself (editable), and the
#   embedded Fashion-MNIST data under data/fashion_mnist.  A second run checks and skips in seconds.
# Environment: MMSSL_PYTHON (interpreter for the venv, default python3.11 or python3),
#   MMSSL_WHEEL_CACHE (mmcv wheel cache, default ~/.cache/mmssl_ext/wheels),
#   FMNIST_SRC (folder with the four Fashion-MNIST IDX files, default the Debian package's).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.mmssl_ext_setup"
FMNIST_SRC=${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}
log() { echo "[setup] $*"; }
# pip without the "WARNING: Location '...' is ignored" lines a machine's pip config prints (an
# extra index that lacks the package); pip's exit status is kept (pipefail)
pip_q() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

# ---------------------------------------------------------------- python environment
want=$(cat requirements.txt tests/requirements-mim.txt scripts/setup.sh scripts/build_mmcv.sh setup.cfg | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && \
   "$PY" -c "import mmssl_ext, mmcv.ops, mmdet, faiss" 2>/dev/null; then
  log "environment .venv up to date"
else
  t0=$SECONDS
  BASE_PY=${MMSSL_PYTHON:-$(command -v python3.11 || command -v python3)}
  if [[ ! -x "$PY" ]]; then
    log "creating .venv with $BASE_PY ($("$BASE_PY" --version))"
    "$BASE_PY" -m venv "$VENV"
  fi
  PIP=("$PY" -m pip --disable-pip-version-check -q)
  log "installing torch 2.14.1 / torchvision 0.29.1"
  pip_q "${PIP[@]}" install torch==2.14.1 torchvision==0.29.1
  "$PY" -c "import torch, torchvision" || { echo "torch install failed" >&2; exit 1; }
  log "mmcv 2.1.0 with ops (built once, then cached)"
  whl=$(bash scripts/build_mmcv.sh "$PY")
  pip_q "${PIP[@]}" install "$whl"
  # same version number as a previously installed (unpatched) mmcv: make sure ours is in
  pip_q "${PIP[@]}" install --force-reinstall --no-deps "$whl"
  log "installing the pinned OpenMMLab stack (requirements.txt)"
  pip_q "${PIP[@]}" install -r requirements.txt
  pip_q "${PIP[@]}" install --no-deps --no-build-isolation -e .
  if ! "$PY" -m pip check >/dev/null; then
    echo "[setup] pip check finds inconsistent requirements in .venv:" >&2
    "$PY" -m pip check >&2 || true
    exit 1
  fi
  # openmim for the tests only, beside the environment (tests/requirements-mim.txt says why)
  pip_q "${PIP[@]}" install --no-deps --upgrade --target "$VENV/mim-test" \
    -r tests/requirements-mim.txt
  "$PY" - <<'PYEOF'
import torch, torchvision, mmengine, mmcv, mmpretrain, mmdet, faiss
from mmcv.ops import RoIAlign, nms  # mmdet needs the compiled ops
import mmssl_ext
assert mmcv.__version__ == '2.1.0', mmcv.__version__
print(f'[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, '
      f'mmengine {mmengine.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmpretrain {mmpretrain.__version__}, mmdet {mmdet.__version__}, faiss {faiss.__version__}, '
      f'mmssl_ext {mmssl_ext.__version__}')
PYEOF
  echo "$want" > "$STAMP"
  log "environment ready in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------- embedded data: Fashion-MNIST
if [[ ! -f "$FMNIST_SRC/train-images-idx3-ubyte.gz" && ! -f "$FMNIST_SRC/train-images-idx3-ubyte" ]]; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    log "installing the Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null
    # (without apt-utils debconf says it delays package configuration: harmless, not shown)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist 2>&1 >/dev/null |
      { grep -v '^debconf: delaying package configuration' || true; } >&2
  else
    cat >&2 <<MSG
[setup] Fashion-MNIST not found in $FMNIST_SRC and apt-get is not usable here (needs root).
  Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist
  elsewhere:     download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
                 t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (Fashion-MNIST,
                 zalandoresearch) into a folder and rerun with FMNIST_SRC=that/folder
MSG
    exit 1
  fi
fi
"$PY" tools/prepare_data.py --src "$FMNIST_SRC" --out data/fashion_mnist
# the COCO-format Fashion-MNIST detection task of configs/transfer/mmdet (seconds; stamped)
"$PY" tools/prepare_detection_data.py --src data/fashion_mnist/raw --out data/fmnist_det >/dev/null
