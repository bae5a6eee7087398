"""The images of a cluster / soft-target step: a non-shuffled dataloader over an
:class:`~mmssl_ext.clusterfit.options.ImageSource`, and the image list (paths relative to the image
prefix, dataset labels) the step writes next to its results."""
import copy
import dataclasses
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.config import Config

from mmssl_ext.datasets.folder import (IMAGE_EXTENSIONS, check_images, eval_pipeline,
                                       scan_images)
from mmssl_ext.utils.config import build_dataloader, load_config
from .options import ImageSource


def _has_labels(ann_path: str) -> bool:
    with open(ann_path) as f:
        for line in f:
            if line.strip():
                parts = line.strip().rsplit(' ', 1)
                return len(parts) == 2 and parts[1].lstrip('-').isdigit()
    return False


def cluster_loader_cfg(source: ImageSource, data_cfg: Optional[Config] = None,
                       data_cfg_name: str = '') -> dict:
    """Dataloader config for the images of ``source``, in a fixed (non-shuffled) order;
    ``data_cfg`` is the loaded ``source.data_config`` (unused with ``data_root``)."""
    s = source
    if s.data_root is not None:
        # a folder tree without list file: labels from the sub-folders, unless unlabeled
        with_label = not s.unlabeled
        if s.ann_file:
            path = s.ann_file if osp.isabs(s.ann_file) else osp.join(s.data_root, s.ann_file)
            if not osp.isfile(path):
                raise FileNotFoundError(f'--ann-file {s.ann_file}: {path} does not exist')
            with_label = _has_labels(path)  # a plain list of paths works too
        dataset = dict(type='CustomDataset', data_root=s.data_root, ann_file=s.ann_file or '',
                       data_prefix=s.data_prefix or '', with_label=with_label,
                       pipeline=eval_pipeline(s.img_size, s.crop_ratio, checked=True))
        if s.unlabeled:
            dataset['extensions'] = IMAGE_EXTENSIONS
        loader = dict(batch_size=s.batch_size or 64, num_workers=2, dataset=dataset,
                      collate_fn=dict(type='default_collate'))
    else:
        if data_cfg is None:
            raise ValueError('no images: pass --data-config (a config with a knn_eval section), '
                             '--config, or --data-root [--ann-file] [--data-prefix]')
        knn = data_cfg.get('knn_eval', None)
        if knn is None or 'train_dataloader' not in knn:
            raise KeyError(f'{data_cfg_name} has no `knn_eval.train_dataloader` to take the '
                           f"images from: inherit 'configs/_base_/datasets/fmnist_knn.py', pass "
                           f'--data-config, or --data-root [--ann-file] [--data-prefix]')
        loader = copy.deepcopy(knn['train_dataloader'])
        loader = loader.to_dict() if hasattr(loader, 'to_dict') else dict(loader)
    loader['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader['persistent_workers'] = False
    if s.batch_size:
        loader['batch_size'] = s.batch_size
    if s.num_workers is not None:
        loader['num_workers'] = s.num_workers
    if s.num_samples:
        loader['dataset']['indices'] = int(s.num_samples)
    return loader


def config_folder(data_cfg: Config, source: ImageSource) -> Optional[ImageSource]:
    """``source`` pointed at the unlabeled folder ``data_cfg`` trains on (a config without
    ``knn_eval.train_dataloader`` whose training set is ``CustomDataset(with_label=False)``,
    e.g. ``configs/pirl/pirl_r18-w32_1xb64-3000it_folder.py``), else None."""
    knn = data_cfg.get('knn_eval', None)
    if knn is not None and 'train_dataloader' in knn:
        return None
    ds = (data_cfg.get('train_dataloader', None) or {}).get('dataset', None)
    if not ds or ds.get('type') != 'CustomDataset' or ds.get('with_label', True):
        return None
    prefix = ds.get('data_prefix', '')
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    return dataclasses.replace(source, data_config=None, data_cfg_options=None,
                               data_root=ds.get('data_root', ''), ann_file=ds.get('ann_file') or
                               None, data_prefix=prefix or None, unlabeled=True)


def readable_indices(source: ImageSource) -> Tuple[Optional[List[int]], Dict[str, str]]:
    """For an unlabeled folder that is scanned (no list file): the indices (in the dataset's
    scan order) of the images the training loader can decode, and ``{path: reason}`` of the
    others; ``(None, {})`` when there is nothing to scan.  A list file from
    ``tools/make_file_list.py`` was checked when it was written, so it is not checked again."""
    if source.data_root is None or not source.unlabeled or source.ann_file:
        return None, {}
    folder = osp.join(source.data_root, source.data_prefix or '')
    rels, _ = scan_images(folder)
    bad = check_images(folder, rels, workers=source.num_workers or 0)
    if bad:
        from mmengine.logging import print_log
        listed = '; '.join(f'{p}: {r}' for p, r in list(bad.items())[:10])
        print_log(f'{folder}: {len(bad)} of {len(rels)} images cannot be loaded and are left '
                  f'out: {listed}', logger='current', level=30)
    return [i for i, p in enumerate(rels) if p not in bad], bad


def image_list(dataset) -> Tuple[List[str], np.ndarray, str, str]:
    """``(paths relative to the image prefix, labels or -1, data_root, image prefix)``."""
    prefix = dataset.data_prefix.get('img_path', '') if isinstance(
        dataset.data_prefix, dict) else ''
    root = getattr(dataset, 'data_root', '') or ''
    rel, labels = [], []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        path = info.get('img_path')
        if path is None:
            raise ValueError(f'{type(dataset).__name__} sample {i} has no img_path: ClusterFit '
                             f'needs an image-file dataset (CustomDataset / ImageNet)')
        if prefix:
            if not path.startswith(prefix):
                raise ValueError(f'{path} is not under the dataset image prefix {prefix}')
            path = path[len(prefix):].lstrip('/\\')
        rel.append(path)
        gt = info.get('gt_label', -1)
        labels.append(int(np.asarray(gt).reshape(-1)[0]) if gt is not None else -1)
    for p in rel:
        if p != p.strip() or '\n' in p:
            raise ValueError(f'image path {p!r} has a line break or surrounding spaces: it '
                             f'cannot be written to an annotation file')
    return rel, np.asarray(labels, dtype=np.int64), root, prefix


class ImageList:
    """The images of a cluster / soft-target step: loader (fixed order) + what to write."""

    def __init__(self, loader, data_name: Optional[str], num_samples: Optional[int],
                 from_config: bool):
        self.loader = loader
        self.dataset = loader.dataset
        self.rel_paths, self.labels, self.root, self.img_prefix = image_list(self.dataset)
        self.data_name = data_name
        self.num_samples = num_samples
        self.from_config = from_config
        self.unreadable: Dict[str, str] = {}  # images left out: path -> reason

    def summary(self) -> dict:
        """The ``data`` entry of a summary: where the images are (read back by fit / distill)."""
        root, prefix = self.root, self.img_prefix
        return dict(data_root=root, data_root_abs=osp.abspath(root) if root else '',
                    img_prefix=prefix, img_prefix_abs=osp.abspath(prefix),
                    data_prefix=osp.relpath(prefix, root) if root else prefix,
                    dataset=type(self.dataset).__name__,
                    from_config=self.data_name if self.from_config else None,
                    num_samples=self.num_samples,
                    unreadable=dict(self.unreadable))


def build_image_loader(source: ImageSource, seed: int = 0) -> ImageList:
    """The (non-shuffled) images of ``source`` (``--data-root ...``, else the
    ``knn_eval.train_dataloader`` of ``source.data_config``: see
    :meth:`~mmssl_ext.clusterfit.options.ImageSource.or_config`)."""
    source.validate()
    data_cfg, data_name = None, source.data_config
    if source.data_root is None and source.data_config is not None:
        data_cfg = load_config(source.data_config)
        if source.data_cfg_options:
            data_cfg.merge_from_dict(source.data_cfg_options)
        folder = config_folder(data_cfg, source)
        if folder is not None:
            source, data_cfg = folder, None
    loader_cfg = cluster_loader_cfg(source, data_cfg, source.data_config or '')
    keep, bad = readable_indices(source)
    if keep is not None:
        n = len(keep) if not source.num_samples else min(len(keep), int(source.num_samples))
        loader_cfg['dataset']['indices'] = keep[:n]
    loader = build_dataloader(loader_cfg, seed=seed)
    images = ImageList(loader, data_name, source.num_samples,
                       from_config=source.data_root is None or data_name is not None)
    images.unreadable = bad
    if keep is not None:
        unexpected = [p for p in images.rel_paths if p in bad]
        if unexpected or len(images.rel_paths) != n:
            raise RuntimeError(f'the dataset lists {len(images.rel_paths)} images, the scan '
                               f'{n} readable ones (unreadable ones listed: {unexpected[:3]}): '
                               f'the folder changed during the scan, or CustomDataset orders it '
                               f'differently; write a list with tools/make_file_list.py')
    return images
