"""ClusterFit's files: the names in a cluster-step / soft-target folder, the annotation format,
reading the folders back, and writing a folder's files atomically.

A cluster-step folder holds ``train_clusters.txt`` (``relative/path.png <cluster id>`` per line,
relative to the image prefix: mmpretrain's ``CustomDataset`` reads it), ``centroids.npy``,
``summary.json`` and, on request, ``features.npy`` / ``pca.npz``; a soft-target folder
``soft_targets.npy`` (N x C), ``train_soft.txt`` (``path argmax``) and ``soft_targets.json``.
"""
import copy
import io
import json
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from mmssl_ext.utils.fileio import atomic_write

ANN_FILE = 'train_clusters.txt'
SUMMARY_FILE = 'summary.json'
CENTROIDS_FILE = 'centroids.npy'
FEATURES_FILE = 'features.npy'
PCA_FILE = 'pca.npz'
BACKBONE_FILE = 'backbone.pth'
SOFT_TARGETS_FILE = 'soft_targets.npy'
SOFT_ANN_FILE = 'train_soft.txt'
SOFT_SUMMARY_FILE = 'soft_targets.json'

Content = Union[bytes, bytearray, memoryview]


# ------------------------------------------------------------------------------ serialising
def annotation_bytes(rel_paths: Sequence[str], labels: Sequence[int]) -> bytes:
    """``path label`` lines, the annotation format of mmpretrain's ``CustomDataset``."""
    return ''.join(f'{p} {int(y)}\n' for p, y in zip(rel_paths, labels)).encode()


def npy_bytes(array: np.ndarray) -> memoryview:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getbuffer()


def npz_bytes(**arrays) -> memoryview:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getbuffer()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2) + '\n').encode()


def summary_json(summary: dict) -> bytes:
    """Indented JSON with the (K-long) size list and the objective history on one line each."""
    s = copy.deepcopy(summary)
    sizes, hist = s['sizes'], s['kmeans']['objective_history']
    s['sizes'], s['kmeans']['objective_history'] = '@SIZES@', '@HISTORY@'
    text = json.dumps(s, indent=2)
    return (text.replace('"@SIZES@"', json.dumps(sizes)).replace(
        '"@HISTORY@"', json.dumps(hist)) + '\n').encode()


# ------------------------------------------------------------------------------ writing
def write_annotation(path: str, rel_paths: Sequence[str], labels: Sequence[int]) -> None:
    """Write an annotation file atomically."""
    atomic_write(path, annotation_bytes(rel_paths, labels))


def write_json(path: str, obj) -> None:
    """Write indented JSON atomically."""
    atomic_write(path, json_bytes(obj))


def write_files(out_dir: str, files: Sequence[Tuple[str, Content]]) -> List[str]:
    """Write ``(name, content)`` pairs into ``out_dir``, each atomically and in order (the
    summary last: a folder with a summary is complete); every content is serialised before
    the first file is written, so a failed step writes nothing.  Returns the names."""
    for name, content in files:
        atomic_write(osp.join(out_dir, name), content)
    return [name for name, _ in files]


# ------------------------------------------------------------------------------ reading
def read_clusters(clusters: str) -> Tuple[str, Optional[dict]]:
    """``(annotation file, summary or None)`` of a cluster-step folder or annotation file."""
    if osp.isdir(clusters):
        ann = osp.join(clusters, ANN_FILE)
        summary_path = osp.join(clusters, SUMMARY_FILE)
    else:
        ann = clusters
        summary_path = osp.join(osp.dirname(clusters), SUMMARY_FILE)
    if not osp.isfile(ann):
        raise FileNotFoundError(f'no pseudo-label file {ann}: run `tools/clusterfit.py cluster '
                                f'--out-dir {osp.dirname(ann) or "."}` first')
    summary = None
    if osp.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    return osp.abspath(ann), summary


def read_soft_targets(soft: str) -> Tuple[str, str, dict]:
    """``(annotation file, soft_targets.npy, summary)`` of a soft-target folder."""
    if not osp.isdir(soft):
        raise FileNotFoundError(f'--soft-targets {soft}: not a folder; give the --out-dir of '
                                f'`tools/clusterfit.py soft-targets`')
    paths = [osp.join(soft, f) for f in (SOFT_ANN_FILE, SOFT_TARGETS_FILE, SOFT_SUMMARY_FILE)]
    for path in paths:
        if not osp.isfile(path):
            raise FileNotFoundError(f'no {path}: run `tools/clusterfit.py soft-targets --out-dir '
                                    f'{soft}` first')
    with open(paths[2]) as f:
        summary = json.load(f)
    return osp.abspath(paths[0]), osp.abspath(paths[1]), summary
