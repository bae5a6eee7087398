"""Balanced, reproducible label subsets for semi-supervised fine-tuning (1 % / 10 % of labels).

The PIRL and BYOL tables fine-tune on 1 % and 10 % of the ImageNet labels.  The subsets here are
drawn from an mmpretrain annotation file (``<relative path> <label>`` per line, as
``data/fashion_mnist/meta/train.txt`` or ImageNet's ``meta/train.txt``):

* balanced: every class gets the same number of images, ``round(p/100 * N / C)`` (at least 1);
* reproducible: a seeded permutation per class (``numpy.random.RandomState(seed + label)``), so
  the same file, percentage and seed always give the same lines;
* nested: the 1 % subset is contained in the 10 % one (both take the first images of the same
  per-class permutation);
* lines keep the order of the source file, so the output is a valid annotation file for the
  ``ImageNet`` / ``CustomDataset`` classes: ``ann_file='meta/train_1pct.txt'``.
"""
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def read_annotation(path: str) -> List[Tuple[str, int]]:
    """``(relative path, label)`` per line of a ``path label`` annotation file (blank lines
    skipped); errors name the file and the line."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation file not found: {path}')
    out = []
    with open(path) as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f'{path}:{no}: expected "<path> <label>", got {line.strip()!r}')
            if not parts[1].isdigit():
                raise ValueError(f'{path}:{no}: label {parts[1]!r} is not an integer >= 0')
            out.append((parts[0], int(parts[1])))
    if not out:
        raise ValueError(f'{path} has no annotation lines')
    return out


def balanced_subset(items: Sequence[Tuple[str, int]], percent: float,
                    seed: int = 0) -> List[int]:
    """Indices (in source order) of a class-balanced ``percent`` % subset of ``items``."""
    if not 0 < percent <= 100:
        raise ValueError(f'percent must be in (0, 100], got {percent}')
    by_class: Dict[int, List[int]] = defaultdict(list)
    for i, (_, label) in enumerate(items):
        by_class[label].append(i)
    per_class = max(1, int(round(percent / 100.0 * len(items) / len(by_class))))
    short = {c: len(v) for c, v in by_class.items() if len(v) < per_class}
    if short:
        raise ValueError(f'a balanced {percent}% subset needs {per_class} images per class, but '
                         f'classes {dict(sorted(short.items()))} have fewer')
    chosen = []
    for label, idx in sorted(by_class.items()):
        perm = np.random.RandomState(seed + label).permutation(len(idx))
        chosen.extend(idx[j] for j in perm[:per_class])
    return sorted(chosen)


def subset_name(ann_file: str, percent: float) -> str:
    stem, ext = osp.splitext(osp.basename(ann_file))
    return f'{stem}_{percent:g}pct{ext or ".txt"}'


def write_subsets(ann_file: str, percents: Sequence[float] = (1, 10), seed: int = 0,
                  out_dir: Optional[str] = None) -> Dict[float, str]:
    """Write one balanced subset file per percentage next to ``ann_file`` (or in ``out_dir``).

    Returns ``{percent: path}``.  Files are written atomically (temp file, then rename).
    """
    items = read_annotation(ann_file)
    out_dir = out_dir or osp.dirname(osp.abspath(ann_file))
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for p in percents:
        idx = balanced_subset(items, p, seed)
        path = osp.join(out_dir, subset_name(ann_file, p))
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.writelines(f'{items[i][0]} {items[i][1]}\n' for i in idx)
        os.replace(tmp, path)
        written[p] = path
    return written


def __getattr__(name):  # deprecated aliases of the entry points that moved to the CLI layer
    if name in ('main',):
        import warnings

        from mmssl_ext.cli import make_semi_subset as _cli
        warnings.warn(f'{__name__}.{name} moved to mmssl_ext.cli.make_semi_subset.{name}',
                      DeprecationWarning, stacklevel=2)
        return getattr(_cli, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
