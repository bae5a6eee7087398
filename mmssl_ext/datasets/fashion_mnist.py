"""Fashion-MNIST, the embedded default data set, in the two forms our configs read.

Source: the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), four
gzipped IDX files.  :func:`prepare_fashion_mnist` writes under ``out_dir`` (``data/fashion_mnist``):

* ``raw/``: the uncompressed IDX files that mmpretrain's ``FashionMNIST`` dataset reads
  (``dict(type='FashionMNIST', data_root='data/fashion_mnist/raw', download=False)``);
* an ImageNet-style tree, so our ImageNet pipelines (``LoadImageFromFile`` ...) and mmpretrain's
  ``ImageNet`` / ``CustomDataset`` run on it unchanged by overriding ``data_root``::

      train/<class>/<index>.png    60000 grayscale 28x28 PNGs (index = position in the IDX file)
      val/<class>/<index>.png      10000 (the Fashion-MNIST test split, named like ImageNet's val)
      meta/train.txt, meta/val.txt "<class>/<index>.png <label>" per line
      meta/classes.txt             one folder name per line, label order

Re-running is cheap: a ``prepared.json`` stamp with the counts and source checksums is checked,
and the work is skipped when it matches.
"""
import gzip
import hashlib
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict

import numpy as np
from PIL import Image

#: the Debian package's install location
DEBIAN_FMNIST_DIR = '/usr/share/datasets/fashion-mnist'
#: label order of Fashion-MNIST (mmpretrain's FashionMNIST uses the same order)
FMNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                  'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
#: folder-safe names of the classes (used as the ImageNet-style class folders)
FMNIST_FOLDERS = ('tshirt_top', 'trouser', 'pullover', 'dress', 'coat',
                  'sandal', 'shirt', 'sneaker', 'bag', 'ankle_boot')
SPLITS = {
    # split name in the tree: (images file, labels file, expected count)
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 60000),
    'val': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte', 10000),
}
STAMP = 'prepared.json'
INSTALL_HINT = (
    'On Debian/Ubuntu: `apt-get update && apt-get install -y dataset-fashion-mnist` '
    f'(installs them to {DEBIAN_FMNIST_DIR}). Elsewhere: download the four files '
    'train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, '
    't10k-labels-idx1-ubyte.gz of the Fashion-MNIST project (zalandoresearch) into a folder '
    'and pass it with --src.')


def _find_source(src_dir: str, stem: str) -> str:
    for name in (stem + '.gz', stem):
        path = osp.join(src_dir, name)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'Fashion-MNIST file {stem}[.gz] not found in {src_dir}. {INSTALL_HINT}')


def _md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array; errors name the file."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f'cannot read IDX file {path}: {e}') from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f'{path} is not an unsigned-byte IDX file (bad magic number '
                         f'{data[:4].hex() if len(data) >= 4 else data.hex()})')
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - header != expected:
        raise ValueError(f'{path}: header announces shape {dims} ({expected} bytes) but the '
                         f'file holds {len(data) - header} bytes (truncated or corrupt)')
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _atomic_copy_uncompressed(src: str, dst: str) -> None:
    opener = gzip.open if src.endswith('.gz') else open
    tmp = dst + '.partial'
    with opener(src, 'rb') as fin, open(tmp, 'wb') as fout:
        shutil.copyfileobj(fin, fout)
    os.replace(tmp, dst)


def _stamp_matches(out_dir: str, sources: Dict[str, str], png: bool) -> bool:
    path = osp.join(out_dir, STAMP)
    if not osp.isfile(path):
        return False
    try:
        with open(path) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    return stamp.get('sources') == sources and (stamp.get('png') or not png)


def prepare_fashion_mnist(src_dir: str = DEBIAN_FMNIST_DIR,
                          out_dir: str = 'data/fashion_mnist',
                          png: bool = True,
                          force: bool = False,
                          progress: bool = True) -> Dict[str, object]:
    """Write Fashion-MNIST under ``out_dir`` in both forms; return a summary dict.

    Args:
        src_dir: folder with the four IDX files (gzipped or not).
        out_dir: destination (``data/fashion_mnist`` in our configs).
        png: also write the ImageNet-style PNG tree (``False``: only ``raw/``).
        force: redo the work even when the stamp says it is done.
        progress: show an mmengine progress bar while writing PNGs.

    Returns:
        dict with ``counts`` per split, ``num_classes`` and ``skipped`` (True if already done).
    """
    if not osp.isdir(src_dir):
        raise FileNotFoundError(f'Fashion-MNIST source folder {src_dir} does not exist. '
                                f'{INSTALL_HINT}')
    files = {}
    for split, (img_stem, lbl_stem, _) in SPLITS.items():
        files[img_stem] = _find_source(src_dir, img_stem)
        files[lbl_stem] = _find_source(src_dir, lbl_stem)
    sources = {stem: _md5(path) for stem, path in sorted(files.items())}
    if not force and _stamp_matches(out_dir, sources, png):
        with open(osp.join(out_dir, STAMP)) as f:
            stamp = json.load(f)
        return dict(counts=stamp['counts'], num_classes=stamp['num_classes'], skipped=True)

    os.makedirs(out_dir, exist_ok=True)
    raw_dir = osp.join(out_dir, 'raw')
    os.makedirs(raw_dir, exist_ok=True)
    arrays = {}
    for stem, path in files.items():
        arr = read_idx(path)  # validates before anything is written
        arrays[stem] = arr
        _atomic_copy_uncompressed(path, osp.join(raw_dir, stem))

    counts = {}
    for split, (img_stem, lbl_stem, expected) in SPLITS.items():
        imgs, labels = arrays[img_stem], arrays[lbl_stem]
        if imgs.ndim != 3 or imgs.shape[1:] != (28, 28):
            raise ValueError(f'{files[img_stem]}: expected N x 28 x 28 images, got {imgs.shape}')
        if len(imgs) != len(labels):
            raise ValueError(f'{files[img_stem]} holds {len(imgs)} images but '
                             f'{files[lbl_stem]} holds {len(labels)} labels')
        if len(imgs) != expected:
            raise ValueError(f'{files[img_stem]}: expected {expected} images for the '
                             f'{split} split of Fashion-MNIST, found {len(imgs)}')
        if labels.max() >= len(FMNIST_CLASSES):
            raise ValueError(f'{files[lbl_stem]}: label {int(labels.max())} out of range '
                             f'0..{len(FMNIST_CLASSES) - 1}')
        counts[split] = int(len(imgs))

    if png:
        _write_png_tree(out_dir, arrays, progress)

    stamp = dict(sources=sources, counts=counts, num_classes=len(FMNIST_CLASSES),
                 classes=list(FMNIST_CLASSES), folders=list(FMNIST_FOLDERS), png=png)
    tmp = osp.join(out_dir, STAMP + '.partial')
    with open(tmp, 'w') as f:
        json.dump(stamp, f, indent=2)
    os.replace(tmp, osp.join(out_dir, STAMP))
    return dict(counts=counts, num_classes=len(FMNIST_CLASSES), skipped=False)


def _write_png_tree(out_dir: str, arrays: Dict[str, np.ndarray], progress: bool) -> None:
    meta_dir = osp.join(out_dir, 'meta')
    os.makedirs(meta_dir, exist_ok=True)
    for split, (img_stem, lbl_stem, _) in SPLITS.items():
        imgs, labels = arrays[img_stem], arrays[lbl_stem]
        # build the split in a temporary sibling folder, then swap it in: an interrupted
        # run never leaves a half-written tree under the final name
        tmp_root = tempfile.mkdtemp(prefix=f'.{split}.', dir=out_dir)
        for folder in FMNIST_FOLDERS:
            os.makedirs(osp.join(tmp_root, folder))
        lines = []
        bar = None
        if progress:
            from mmengine.utils import ProgressBar
            print(f'writing {len(imgs)} PNGs of the {split} split')
            bar = ProgressBar(len(imgs))
        for i, (img, label) in enumerate(zip(imgs, labels)):
            rel = f'{FMNIST_FOLDERS[int(label)]}/{i:05d}.png'
            Image.fromarray(img, mode='L').save(osp.join(tmp_root, rel), optimize=False)
            lines.append(f'{rel} {int(label)}\n')
            if bar is not None and (i + 1) % 2000 == 0:
                bar.update(2000)
        if bar is not None:
            print()
        final = osp.join(out_dir, split)
        if osp.isdir(final):
            shutil.rmtree(final)
        os.replace(tmp_root, final)
        ann_tmp = osp.join(meta_dir, f'{split}.txt.partial')
        with open(ann_tmp, 'w') as f:
            f.writelines(lines)
        os.replace(ann_tmp, osp.join(meta_dir, f'{split}.txt'))
    with open(osp.join(meta_dir, 'classes.txt'), 'w') as f:
        f.write('\n'.join(FMNIST_FOLDERS) + '\n')
