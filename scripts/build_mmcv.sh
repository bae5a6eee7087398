#!/usr/bin/env bash
# Build mmcv==2.1.0 (with its compiled ops, CPU) from the PyPI sdist into a wheel cache
# outside the repository, and print the wheel's path.
#
# Why this exists: mmcv publishes no wheel for torch 2.14 / Python 3.11 and mmdet 3.3.0 refuses
# mmcv>=2.2.0.  The 2.1.0 sdist hard-codes -std=c++14/17 while torch 2.14's headers need C++20,
# and its setup.py imports pkg_resources (setuptools<70).  ~10 min on 2 cores; cached afterwards.
# The build runs in a throw-away venv holding setuptools<70, wheel and ninja, which sees the target
# venv's torch and numpy through a .pth file: the target venv never gets the old setuptools (its
# torch needs setuptools>=77), and pip never resolves the two pins together.
# One source fix: adjust_hue does `np.uint8(hue_factor * 255)`, which numpy 2 refuses for a
# negative factor (OverflowError; numpy 1 wrapped around), so mmpretrain's ColorJitter with
# hue > 0 crashes at random.  We apply the same wrap-around explicitly.
#
# usage: scripts/build_mmcv.sh PYTHON   (PYTHON: the venv interpreter, torch already installed)
set -euo pipefail
PY_ARG=${1:?usage: build_mmcv.sh PYTHON}
PY="$(cd "$(dirname "$PY_ARG")" && pwd)/$(basename "$PY_ARG")"  # absolute, symlink kept (venv)
MMCV_VERSION=2.1.0
CACHE=${MMSSL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmssl_ext/wheels}
mkdir -p "$CACHE"
TORCH_TAG=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# one cache folder per (torch, python): the ops are ABI-bound to the torch they were built against
PATCH_LEVEL=p1  # bump when the source patches below change: a new cache entry is built
DEST="$CACHE/torch$TORCH_TAG-$PYTAG-$PATCH_LEVEL"
mkdir -p "$DEST"
existing=$(ls "$DEST"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
if [[ -n "$existing" ]]; then
  echo "$existing"
  exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "[build_mmcv] building mmcv $MMCV_VERSION with ops for torch $TORCH_TAG ($PYTAG); ~10 min on 2 cores" >&2
# pip's output on stderr, without the "WARNING: Location '...' is ignored" lines a machine's pip
# config prints (an extra index that lacks the package); pip's exit status is kept (pipefail)
pip_q() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; } >&2; }
BUILD_VENV="$WORK/build-venv"
"$PY" -m venv "$BUILD_VENV"
BPY="$BUILD_VENV/bin/python"
pip_q "$BPY" -m pip install -q --disable-pip-version-check "setuptools<70" wheel ninja
# only now (after pip's dependency check) the target's packages become visible, behind ours
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
site_of "$PY" > "$(site_of "$BPY")/zz_target_venv.pth"
if ! "$BPY" -c 'import pkg_resources, torch'; then
  echo "[build_mmcv] the build venv cannot import pkg_resources and the target's torch" >&2
  exit 1
fi
pip_q "$BPY" -m pip download -q --disable-pip-version-check --no-deps --no-build-isolation \
  --no-binary :all: "mmcv==$MMCV_VERSION" -d "$WORK"
tar -xzf "$WORK/mmcv-$MMCV_VERSION.tar.gz" -C "$WORK"
SRC="$WORK/mmcv-$MMCV_VERSION"
sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
if grep -q -- '-std=c++1[47]' "$SRC/setup.py"; then
  echo "[build_mmcv] could not patch the C++ standard flags in $SRC/setup.py" >&2
  exit 1
fi
PHOTO="$SRC/mmcv/image/photometric.py"
sed -i 's/np\.uint8(hue_factor \* 255)/np.uint8(int(hue_factor * 255) % 256)/g' "$PHOTO"
if grep -q 'np.uint8(hue_factor \* 255)' "$PHOTO" || \
   [[ $(grep -c 'np.uint8(int(hue_factor \* 255) % 256)' "$PHOTO") != 2 ]]; then
  echo "[build_mmcv] could not patch adjust_hue in $PHOTO" >&2
  exit 1
fi
# the build venv's bin first on PATH: torch's extension builder runs the `ninja` it finds there
( cd "$SRC" && export PATH="$BUILD_VENV/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} &&
  pip_q "$BPY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation . \
    -w "$WORK/dist" )
whl=$(ls "$WORK"/dist/mmcv-$MMCV_VERSION-*.whl)
# write under a temporary name then rename, so an interrupted build never leaves a half wheel
cp "$whl" "$DEST/.partial.whl"
mv "$DEST/.partial.whl" "$DEST/$(basename "$whl")"
echo "$DEST/$(basename "$whl")"
