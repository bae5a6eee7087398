"""A small, deterministic COCO-format detection / instance-segmentation set from Fashion-MNIST.

Every canvas is a square black grayscale image on which a few Fashion-MNIST items, each rescaled by
a random factor, are pasted (``np.maximum`` blending) at random positions fully inside the canvas;
a placement whose box would overlap an earlier box with IoU above ``max_iou`` is retried a bounded
number of times, then the item is dropped. Layout written under ``out_dir`` (``data/fmnist_det``)::

    train/000000.png ...        canvases made only of Fashion-MNIST *train* images
    val/000000.png ...          canvases made only of Fashion-MNIST *test* (t10k) images
    annotations/train.json      COCO instances: images, annotations, categories
    annotations/val.json
    prepared.json               stamp: parameters, counts, source checksums

Annotations: ``bbox`` is the tight box ``[x, y, w, h]`` of the item's pixels above
:data:`PIXEL_THRESHOLD` (``x, y`` = top-left pixel, ``w = x_max - x_min + 1``), ``segmentation``
the same pixels as COCO compressed RLE, ``area`` their count, ``iscrowd`` 0, ``category_id`` the
Fashion-MNIST label + 1 (names exactly :data:`FMNIST_CLASSES`), plus ``fmnist_split``
(``'train'``/``'test'``) and ``fmnist_index`` (position in that IDX file) to trace each item back.
Image ids are ``index + 1`` (``file_name`` ``f'{index:06d}.png'``, relative to the split folder).

Load it in mmdet with::

    dict(type='CocoDataset', data_root='data/fmnist_det', ann_file='annotations/train.json',
         data_prefix=dict(img='train/'), metainfo=fmnist_det_metainfo(), ...)

The same parameters give byte-identical files (one ``np.random.RandomState`` per split, seeded with
``seed`` and ``seed + 1``); a re-run with the same parameters and sources is skipped thanks to the
stamp, other parameters regenerate the set. Everything is written in a temporary sibling folder and
renamed into place, so an interrupted run never leaves a half data set under ``out_dir``.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .fashion_mnist import (DEBIAN_FMNIST_DIR, FMNIST_CLASSES, INSTALL_HINT, SPLITS,
                            _find_source, read_idx)

#: default source: the uncompressed copy written by tools/prepare_data.py, if present
LOCAL_RAW_DIR = osp.join('data', 'fashion_mnist', 'raw')
DEFAULT_OUT = osp.join('data', 'fmnist_det')
STAMP = 'prepared.json'
#: bump when the generation algorithm changes, so old stamps no longer match
GENERATOR_VERSION = 1
#: an item pixel belongs to the item's mask / box when its value is above this (out of 255)
PIXEL_THRESHOLD = 10
#: items whose mask has fewer pixels than this are not pasted (and not annotated)
MIN_ITEM_PIXELS = 16
#: placements tried per item before it is dropped
MAX_PLACEMENT_TRIES = 20
#: smallest allowed side (px) of a rescaled item
MIN_ITEM_SIZE = 4
FMNIST_SIZE = 28
#: output split -> (key in fashion_mnist.SPLITS, Fashion-MNIST split name, seed offset)
DET_SPLITS = {'train': ('train', 'train', 0), 'val': ('val', 'test', 1)}
#: one colour per class for mmdet's visualiser
FMNIST_DET_PALETTE = [(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228),
                      (0, 60, 100), (0, 80, 100), (0, 0, 70), (250, 170, 30), (100, 170, 30)]


def fmnist_det_metainfo() -> Dict[str, object]:
    """``metainfo`` for mmdet's ``CocoDataset``: the 10 class names (ids 1..10) and a palette."""
    return dict(classes=tuple(FMNIST_CLASSES), palette=list(FMNIST_DET_PALETTE))


#: the same, as a constant (do not mutate; use :func:`fmnist_det_metainfo` for a fresh copy)
FMNIST_DET_METAINFO = fmnist_det_metainfo()


def default_source_dir() -> str:
    """``data/fashion_mnist/raw`` if it holds the four IDX files, else the Debian location."""
    stems = [s for img, lbl, _ in SPLITS.values() for s in (img, lbl)]
    if all(osp.isfile(osp.join(LOCAL_RAW_DIR, s)) or osp.isfile(osp.join(LOCAL_RAW_DIR, s + '.gz'))
           for s in stems):
        return LOCAL_RAW_DIR
    return DEBIAN_FMNIST_DIR


def _check_params(num_train, num_val, canvas_size, min_items, max_items, scale_range, max_iou,
                  seed) -> Tuple[float, float]:
    def _int(name, value, low):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f'{name} must be an integer, got {value!r}')
        if value < low:
            what = 'positive' if low == 1 else f'>= {low}'
            raise ValueError(f'{name} must be {what}, got {value}')

    _int('num_train', num_train, 1)
    _int('num_val', num_val, 1)
    _int('canvas_size', canvas_size, 1)
    _int('min_items', min_items, 1)
    _int('max_items', max_items, 1)
    _int('seed', seed, 0)
    if seed + 1 >= 2 ** 32:
        raise ValueError(f'seed must be below 2**32 - 1 (seed + 1 seeds the val split), got {seed}')
    if min_items > max_items:
        raise ValueError(f'min_items ({min_items}) > max_items ({max_items})')
    try:
        lo, hi = (float(s) for s in scale_range)
    except (TypeError, ValueError):
        raise ValueError(f'scale_range must be two numbers (low, high), got {scale_range!r}') \
            from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 or lo > hi:
        raise ValueError(f'scale_range must satisfy 0 < low <= high, got ({lo}, {hi})')
    if _item_size(lo) < MIN_ITEM_SIZE:
        raise ValueError(f'scale_range low {lo} makes items {_item_size(lo)} px wide '
                         f'(< {MIN_ITEM_SIZE} px); use a larger scale')
    if _item_size(hi) > canvas_size:
        raise ValueError(f'scale_range high {hi} makes items {_item_size(hi)} px wide '
                         f'({FMNIST_SIZE} x {hi}), larger than the canvas ({canvas_size} px); '
                         f'lower the scale or enlarge --canvas-size')
    if not (isinstance(max_iou, (int, float, np.floating)) and 0 <= float(max_iou) <= 1):
        raise ValueError(f'max_iou must be a number in [0, 1], got {max_iou!r}')
    return lo, hi


def _item_size(scale: float) -> int:
    return int(round(FMNIST_SIZE * scale))


def _load_sources(src_dir: str) -> Tuple[Dict[str, Tuple[np.ndarray, np.ndarray]],
                                         Dict[str, str]]:
    """Images and labels per output split, and a content checksum per IDX file."""
    if not osp.isdir(src_dir):
        raise FileNotFoundError(f'Fashion-MNIST source folder {src_dir} does not exist. '
                                f'{INSTALL_HINT}')
    files = {}
    for split, (key, _, _) in DET_SPLITS.items():
        img_stem, lbl_stem, _ = SPLITS[key]
        files[split] = (_find_source(src_dir, img_stem), _find_source(src_dir, lbl_stem))
    arrays, sums = {}, {}
    for split, (img_path, lbl_path) in files.items():
        imgs, labels = read_idx(img_path), read_idx(lbl_path)
        if imgs.ndim != 3 or imgs.shape[1:] != (FMNIST_SIZE, FMNIST_SIZE) or len(imgs) == 0:
            raise ValueError(f'{img_path}: expected N x 28 x 28 images (N >= 1), got '
                             f'{imgs.shape}')
        if labels.ndim != 1 or len(labels) != len(imgs):
            raise ValueError(f'{img_path} holds {len(imgs)} images but {lbl_path} holds '
                             f'labels of shape {labels.shape}')
        if labels.max() >= len(FMNIST_CLASSES):
            raise ValueError(f'{lbl_path}: label {int(labels.max())} out of range '
                             f'0..{len(FMNIST_CLASSES) - 1}')
        arrays[split] = (imgs, labels)
        for path, arr in ((img_path, imgs), (lbl_path, labels)):
            # checksum of the decoded content: the .gz and the uncompressed copy stamp alike
            h = hashlib.md5(repr(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).data)
            sums[osp.basename(path).replace('.gz', '')] = h.hexdigest()
    return arrays, dict(sorted(sums.items()))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x1, y1, x2, y2]`` box with each row of ``boxes`` (continuous coordinates)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def _rle(mask: np.ndarray) -> Dict[str, object]:
    from pycocotools import mask as mask_util
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=[int(s) for s in rle['size']], counts=rle['counts'].decode('ascii'))


def _generate_split(split: str, imgs: np.ndarray, labels: np.ndarray, num: int, img_dir: str,
                    rng: np.random.RandomState, canvas_size: int, min_items: int,
                    max_items: int, scale_range: Tuple[float, float],
                    max_iou: float) -> Dict[str, object]:
    """Write ``num`` canvases into ``img_dir``; return the COCO dict of the split."""
    fmnist_split = DET_SPLITS[split][1]
    lo, hi = scale_range
    images: List[dict] = []
    annotations: List[dict] = []
    # draw all per-canvas / per-item choices that do not depend on placement up front
    n_items = rng.randint(min_items, max_items + 1, size=num)
    total = int(n_items.sum())
    src_idx = rng.randint(0, len(imgs), size=total)
    scales = rng.uniform(lo, hi, size=total)
    starts = np.concatenate([[0], np.cumsum(n_items)])
    for i in range(num):
        canvas = np.zeros((canvas_size, canvas_size), dtype=np.uint8)
        placed = np.zeros((0, 4), dtype=np.float64)
        canvas_anns = []
        for k in range(starts[i], starts[i + 1]):
            idx = int(src_idx[k])
            size = _item_size(scales[k])
            item = np.asarray(Image.fromarray(imgs[idx], mode='L').resize(
                (size, size), Image.BILINEAR))
            mask = item > PIXEL_THRESHOLD
            if int(mask.sum()) < MIN_ITEM_PIXELS:
                continue  # empty / tiny item: not pasted, not annotated
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
            # placements of the whole item patch fully inside the canvas, all tries at once
            offs = rng.randint(0, canvas_size - size + 1, size=(MAX_PLACEMENT_TRIES, 2))
            for ox, oy in offs:
                box = np.array([ox + x0, oy + y0, ox + x1 + 1, oy + y1 + 1], dtype=np.float64)
                if len(placed) == 0 or _iou(box, placed).max() <= max_iou:
                    break
            else:
                continue  # no free spot: the item is dropped
            ox, oy = int(ox), int(oy)
            region = canvas[oy:oy + size, ox:ox + size]
            np.maximum(region, item, out=region)
            full = np.zeros((canvas_size, canvas_size), dtype=bool)
            full[oy:oy + size, ox:ox + size] = mask
            placed = np.vstack([placed, box[None]])
            canvas_anns.append(dict(
                image_id=i + 1,
                category_id=int(labels[idx]) + 1,
                bbox=[ox + x0, oy + y0, x1 - x0 + 1, y1 - y0 + 1],
                area=int(mask.sum()),
                segmentation=_rle(full),
                iscrowd=0,
                fmnist_split=fmnist_split,
                fmnist_index=idx,
            ))
        file_name = f'{i:06d}.png'
        Image.fromarray(canvas, mode='L').save(osp.join(img_dir, file_name), format='PNG',
                                               optimize=False, compress_level=6)
        images.append(dict(id=i + 1, file_name=file_name, width=canvas_size,
                           height=canvas_size))
        for ann in canvas_anns:
            ann['id'] = len(annotations) + 1
            annotations.append(ann)
    categories = [dict(id=c + 1, name=name, supercategory='fashion')
                  for c, name in enumerate(FMNIST_CLASSES)]
    return dict(info=dict(description=f'Fashion-MNIST detection canvases ({split} split, '
                                      f'items from the Fashion-MNIST {fmnist_split} split)',
                          version=str(GENERATOR_VERSION)),
                images=images, annotations=annotations, categories=categories)


def _read_stamp(out_dir: str) -> Optional[dict]:
    path = osp.join(out_dir, STAMP)
    try:
        with open(path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _summary(out_dir: str, stamp: dict, skipped: bool, src_dir: str) -> Dict[str, object]:
    splits = {}
    for split in DET_SPLITS:
        splits[split] = dict(img_dir=osp.join(out_dir, split),
                             ann_file=osp.join(out_dir, 'annotations', f'{split}.json'),
                             **stamp['counts'][split])
    return dict(out_dir=out_dir, src_dir=src_dir, skipped=skipped,
                stamp=osp.join(out_dir, STAMP), params=stamp['params'], splits=splits)


def prepare_fmnist_detection(src_dir: Optional[str] = None,
                             out_dir: str = DEFAULT_OUT,
                             num_train: int = 4000,
                             num_val: int = 500,
                             canvas_size: int = 128,
                             min_items: int = 2,
                             max_items: int = 5,
                             scale_range: Sequence[float] = (0.9, 1.8),
                             max_iou: float = 0.25,
                             seed: int = 0,
                             force: bool = False) -> Dict[str, object]:
    """Generate the detection set under ``out_dir`` (see the module doc); return a summary.

    Args:
        src_dir: folder with the four Fashion-MNIST IDX files (gzipped or not); ``None``:
            :func:`default_source_dir`.
        out_dir: destination; replaced as a whole when regenerated (it must be empty, absent or
            a previous output of this function).
        num_train, num_val: number of canvases per split.
        canvas_size: side of the square canvases in pixels.
        min_items, max_items: number of items drawn per canvas (inclusive range; items that
            find no free spot or are tiny are dropped, so a canvas may hold fewer).
        scale_range: (low, high) of the uniform rescaling factor of the 28 px items.
        max_iou: largest IoU allowed between the box of a new item and an earlier box.
        seed: seed of the train split (the val split uses ``seed + 1``).
        force: regenerate even when the stamp matches.

    Returns:
        dict with ``out_dir``, ``src_dir``, ``skipped`` (True if the stamp matched),
        ``stamp``, ``params`` and ``splits`` (per split: ``img_dir``, ``ann_file``,
        ``images``, ``boxes``).
    """
    scale_range = _check_params(num_train, num_val, canvas_size, min_items, max_items,
                                scale_range, max_iou, seed)
    if src_dir is None:
        src_dir = default_source_dir()
    arrays, sources = _load_sources(src_dir)  # validates the sources before anything is written
    params = dict(num_train=int(num_train), num_val=int(num_val), canvas_size=int(canvas_size),
                  min_items=int(min_items), max_items=int(max_items),
                  scale_range=[scale_range[0], scale_range[1]], max_iou=float(max_iou),
                  seed=int(seed), generator_version=GENERATOR_VERSION,
                  pixel_threshold=PIXEL_THRESHOLD, min_item_pixels=MIN_ITEM_PIXELS,
                  max_placement_tries=MAX_PLACEMENT_TRIES)
    out_dir = osp.normpath(out_dir)
    old = _read_stamp(out_dir) if osp.isdir(out_dir) else None
    if (not force and old is not None and old.get('params') == params
            and old.get('sources') == sources
            and all(osp.isfile(osp.join(out_dir, 'annotations', f'{s}.json'))
                    for s in DET_SPLITS)):
        return _summary(out_dir, old, True, src_dir)
    if osp.exists(out_dir):
        if not osp.isdir(out_dir):
            raise FileExistsError(f'output path {out_dir} exists and is not a folder')
        if old is None and os.listdir(out_dir):
            raise FileExistsError(
                f'output folder {out_dir} is not empty and holds no {STAMP} of a previous '
                f'Fashion-MNIST detection set; refusing to replace it (choose another --out or '
                f'remove it)')

    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.partial.', dir=parent)
    try:
        counts = {}
        os.makedirs(osp.join(tmp_root, 'annotations'))
        for split, (_, _, seed_offset) in DET_SPLITS.items():
            img_dir = osp.join(tmp_root, split)
            os.makedirs(img_dir)
            imgs, labels = arrays[split]
            coco = _generate_split(
                split, imgs, labels, params[f'num_{split}'], img_dir,
                np.random.RandomState(seed + seed_offset), canvas_size, min_items, max_items,
                scale_range, float(max_iou))
            with open(osp.join(tmp_root, 'annotations', f'{split}.json'), 'w') as f:
                f.write(json.dumps(coco, separators=(',', ':')))  # C encoder: faster than dump
            counts[split] = dict(images=len(coco['images']), boxes=len(coco['annotations']))
        stamp = dict(params=params, sources=sources, counts=counts,
                     classes=list(FMNIST_CLASSES))
        with open(osp.join(tmp_root, STAMP), 'w') as f:
            json.dump(stamp, f, indent=2)
        os.chmod(tmp_root, 0o755)  # mkdtemp creates it 0700
        # swap in: the old set (if any) is moved aside first, then removed
        trash = None
        if osp.isdir(out_dir):
            trash = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}.old.', dir=parent)
            os.replace(out_dir, osp.join(trash, 'old'))
        os.replace(tmp_root, out_dir)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    return _summary(out_dir, stamp, False, src_dir)


def __getattr__(name):  # deprecated aliases of the entry points that moved to the CLI layer
    if name in ('main',):
        import warnings

        from mmssl_ext.cli import prepare_detection_data as _cli
        warnings.warn(f'{__name__}.{name} moved to mmssl_ext.cli.prepare_detection_data.{name}',
                      DeprecationWarning, stacklevel=2)
        return getattr(_cli, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
