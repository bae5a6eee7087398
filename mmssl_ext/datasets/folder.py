"""A plain folder of images as a data set: scan it once, check that every image loads, and
write the readable ones as a file list that mmpretrain's ``CustomDataset`` reads (``ann_file``).

* :func:`scan_images`: the image files under a folder, any nesting, relative paths sorted as
  ``CustomDataset(with_label=False)`` sorts them when it scans (so a list and a scan give the
  same sample order, hence the same training run);
* :func:`check_images`: which of them cannot be loaded, decoded by the training loader itself
  (:class:`~mmssl_ext.datasets.transforms.LoadImageFromFileChecked`), optionally in worker
  processes;
* :func:`scan_folder`: both, as a :class:`FolderScan` (readable / corrupt / other files);
* :func:`write_file_list` / :func:`read_file_list`: the list, one relative path a line, written
  atomically.

``tools/make_file_list.py DIR`` is the command line (:mod:`mmssl_ext.cli.make_file_list`).
"""
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmssl_ext.utils.fileio import atomic_write

#: the extensions of mmpretrain's ``CustomDataset`` plus ``.tiff`` and ``.webp`` (cv2 reads both)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
#: the default name of the list, inside the scanned folder
DEFAULT_LIST_NAME = 'file_list.txt'


def _listable(rel: str) -> bool:
    """A path that one line of a list file can hold (``list_from_file`` strips ``\\n\\r``)."""
    return bool(rel) and '\n' not in rel and '\r' not in rel


def scan_images(root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS
                ) -> Tuple[List[str], List[str]]:
    """``(images, others)``: the files under ``root`` (any depth, symbolic links followed) whose
    lower-cased name ends with one of ``extensions``, and all other files; paths relative to
    ``root`` with ``/``, sorted as plain strings.  Hidden files (``.name``) are left out, as
    mmengine's folder listing behind ``CustomDataset`` leaves them out.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    if not osp.isdir(root):
        raise FileNotFoundError(f'image folder not found: {root} (not a directory)')
    exts = tuple(e.lower() for e in extensions)
    images, others = [], []
    stack = ['']
    while stack:
        rel_dir = stack.pop()
        with os.scandir(osp.join(root, rel_dir)) as it:
            for entry in it:
                rel = f'{rel_dir}/{entry.name}' if rel_dir else entry.name
                if entry.is_dir():
                    stack.append(rel)
                elif entry.is_file() and not entry.name.startswith('.'):
                    (images if entry.name.lower().endswith(exts) else others).append(rel)
    return sorted(images), sorted(others)


def _check_chunk(args: Tuple[str, List[str]]) -> List[Optional[str]]:
    from mmssl_ext.datasets.transforms.loading import LoadImageFromFileChecked
    root, rels = args
    loader = LoadImageFromFileChecked()
    return [loader.check(osp.join(root, rel)) for rel in rels]


def check_images(root: str, rel_paths: Sequence[str], workers: int = 0, chunk: int = 512,
                 progress=None) -> Dict[str, str]:
    """``{relative path: reason}`` of the files under ``root`` that the training loader cannot
    load (decoded exactly as in training).  ``workers`` > 0: that many processes.
    ``progress(done, total)`` is called after each chunk."""
    chunks = [(root, list(rel_paths[i:i + chunk])) for i in range(0, len(rel_paths), chunk)]
    bad: Dict[str, str] = {}
    done = 0

    def collect(args, reasons):
        nonlocal done
        for rel, reason in zip(args[1], reasons):
            if reason is not None:
                bad[rel] = reason
        done += len(args[1])
        if progress is not None:
            progress(done, len(rel_paths))

    if workers and workers > 0 and len(chunks) > 1:
        import multiprocessing as mp
        with mp.get_context('spawn' if os.name == 'nt' else 'fork').Pool(workers) as pool:
            for args, reasons in zip(chunks, pool.imap(_check_chunk, chunks)):
                collect(args, reasons)
    else:
        for args in chunks:
            collect(args, _check_chunk(args))
    return bad


@dataclass
class FolderScan:
    """The result of :func:`scan_folder`: readable images (relative paths, in list order), corrupt
    ones with the reason, and the files that are not images by their extension."""
    root: str
    images: List[str] = field(default_factory=list)
    corrupt: Dict[str, str] = field(default_factory=dict)
    others: List[str] = field(default_factory=list)
    checked: bool = True
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def num_files(self) -> int:
        return len(self.images) + len(self.corrupt) + len(self.others)

    def summary(self, max_listed: int = 10) -> str:
        what = 'readable' if self.checked else 'unchecked'
        lines = [f'{self.root}: {self.num_files} files: {len(self.images)} {what} images, '
                 f'{len(self.corrupt)} corrupt, {len(self.others)} skipped (not an image '
                 f'extension: {", ".join(IMAGE_EXTENSIONS)})']
        for rel, reason in list(self.corrupt.items())[:max_listed]:
            lines.append(f'  corrupt: {rel}: {reason}')
        if len(self.corrupt) > max_listed:
            lines.append(f'  ... and {len(self.corrupt) - max_listed} more corrupt files')
        if self.others:
            listed = ', '.join(self.others[:max_listed])
            more = f', ... ({len(self.others)} in all)' if len(self.others) > max_listed else ''
            lines.append(f'  skipped: {listed}{more}')
        if self.seconds:
            lines.append('  time: ' + ', '.join(f'{k} {v:.2f} s' for k, v in self.seconds.items()))
        return '\n'.join(lines)


def scan_folder(root: str, check: bool = True, workers: int = 0,
                extensions: Sequence[str] = IMAGE_EXTENSIONS,
                exclude: Iterable[str] = (), progress=None) -> FolderScan:
    """Scan ``root`` once; with ``check``, decode every image and move the unreadable ones (and
    names a list line cannot hold) to :attr:`FolderScan.corrupt`.  ``exclude``: relative paths
    left out (e.g. the list file itself)."""
    t0 = time.perf_counter()
    images, others = scan_images(root, extensions)
    exclude = set(exclude)
    images = [p for p in images if p not in exclude]
    others = [p for p in others if p not in exclude]
    res = FolderScan(root=root, others=others, checked=check)
    res.corrupt = {p: 'the name holds a line break: a list file cannot hold it'
                   for p in images if not _listable(p)}
    images = [p for p in images if p not in res.corrupt]
    res.seconds['scan'] = time.perf_counter() - t0
    if check:
        t1 = time.perf_counter()
        res.corrupt.update(check_images(root, images, workers, progress=progress))
        res.seconds['check'] = time.perf_counter() - t1
    res.images = [p for p in images if p not in res.corrupt]
    return res


def eval_pipeline(img_size: int, crop_ratio: Optional[float] = None,
                  checked: bool = False) -> List[dict]:
    """The evaluation pipeline of a folder: resize to ``img_size`` x ``img_size``, or with
    ``crop_ratio`` the short side to ``img_size / crop_ratio`` and a centre crop (ImageNet's
    224 / 0.875 = 256); ``checked``: :class:`LoadImageFromFileChecked` (errors name the file)."""
    load = dict(type='LoadImageFromFileChecked' if checked else 'LoadImageFromFile')
    if crop_ratio:
        return [load, dict(type='ResizeEdge', scale=int(round(img_size / crop_ratio)),
                           edge='short'),
                dict(type='CenterCrop', crop_size=img_size), dict(type='PackInputs')]
    return [load, dict(type='Resize', scale=(img_size, img_size)), dict(type='PackInputs')]


def labelled_folder_loader(folder: str, img_size: int = 32, crop_ratio: Optional[float] = None,
                           batch_size: int = 256, num_workers: int = 2,
                           pipeline: Optional[list] = None) -> dict:
    """A non-shuffled dataloader config over a labelled folder (one sub-folder per class, any
    nesting below it): the train / test set of kNN and the probes."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'labelled image folder not found: {folder} (expected one '
                                f'sub-folder of images per class)')
    return dict(
        batch_size=batch_size, num_workers=num_workers, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type='CustomDataset', data_root=folder, data_prefix='', ann_file='',
                     with_label=True, extensions=IMAGE_EXTENSIONS,
                     pipeline=pipeline or eval_pipeline(img_size, crop_ratio, checked=True)))


def folder_knn_section(knn: dict, train_folder: Optional[str] = None,
                       val_folder: Optional[str] = None, where: str = 'knn_eval') -> dict:
    """``knn`` with ``train_dataloader`` / ``val_dataloader`` over labelled folders: the given
    ones, else the short form of ``configs/_base_/datasets/folder_unlabeled.py``
    (``data_root`` + ``train_prefix`` / ``val_prefix``, ``img_size``, ``crop_ratio``,
    ``batch_size``, ``num_workers``).  A full section without folders is returned as is.

    Raises:
        ValueError: a short form whose ``data_root`` is unset and no folders given.
    """
    knn = dict(knn or {})
    if train_folder is None and val_folder is None and 'train_dataloader' in knn:
        return knn
    root = knn.get('data_root', None)
    if root is not None:
        train_folder = train_folder or osp.join(root, knn.get('train_prefix', 'train'))
        val_folder = val_folder or osp.join(root, knn.get('val_prefix', 'val'))
    if train_folder is None or val_folder is None:
        raise ValueError(f'{where}: no labelled images to evaluate on (evaluation is off on an '
                         f'unlabeled folder). Point it at a labelled folder with one sub-folder '
                         f'per class: --train-folder DIR/train --val-folder DIR/val, or '
                         f'--cfg-options knn_eval.data_root=DIR (DIR/train, DIR/val)')
    opts = dict(img_size=knn.get('img_size', 32), crop_ratio=knn.get('crop_ratio', None),
                batch_size=knn.get('batch_size', 256), num_workers=knn.get('num_workers', 2),
                pipeline=knn.get('pipeline', None))
    if opts['pipeline'] is None and 'train_dataloader' in knn:  # the section's own pipeline
        opts['pipeline'] = knn['train_dataloader']['dataset'].get('pipeline', None)
    knn['train_dataloader'] = labelled_folder_loader(train_folder, **opts)
    knn['val_dataloader'] = labelled_folder_loader(val_folder, **opts)
    return knn


def file_list_bytes(rel_paths: Sequence[str]) -> bytes:
    """The list file's content: one path a line (mmpretrain's ``with_label=False`` format)."""
    for p in rel_paths:
        if not _listable(p):
            raise ValueError(f'image path {p!r} cannot be written to a list file')
    return ''.join(f'{p}\n' for p in rel_paths).encode('utf-8')


def write_file_list(path: str, rel_paths: Sequence[str]) -> str:
    """Write the list atomically (temporary file, then rename); returns ``path``."""
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
    atomic_write(path, file_list_bytes(rel_paths))
    return path


def read_file_list(path: str) -> List[str]:
    """The paths of a list file, as ``CustomDataset(with_label=False)`` reads them."""
    from mmengine.fileio import list_from_file
    return list_from_file(path)
