"""What the analysis tools (``tools/analysis/*.py``) share: checkpoint arguments, the model of a
checkpoint, the ``knn_eval`` data, seeded subsets, the common command line and the output files.

Every tool takes ``CONFIG CKPT [CKPT ...]``; a CKPT is

* a full training checkpoint (``backbone.*`` keys) or a backbone-only file
  (``tools/extract_backbone.py``), named after its file (``iter_3000``; the parent folder is
  prefixed when two files share a name);
* ``NAME=PATH``, the same with an explicit name (``pirl=work_dirs/pirl/iter_3000.pth``);
* ``random``: the config's model with its seeded random initialisation.

The config gives the model and, in its ``knn_eval`` section, the data: ``train_dataloader`` (the
memory / probe-train split) and ``val_dataloader`` (the test split).
"""
import argparse
import contextlib
import itertools
import json
import os
import os.path as osp
import re
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from torch.utils.data import DataLoader, Subset

from mmssl_ext.cli.knn_eval import _knn_cfg
from mmssl_ext.utils.checkpoint import load_backbone_weights
from mmssl_ext.utils.config import build_dataloader, build_model, load_config

RANDOM = 'random'
_VIS_COUNT = itertools.count()  # unique visualizer instance names in one process


def parse_checkpoints(specs: Sequence[str],
                      names: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    """``[(name, path_or_'random'), ...]`` from the command line's CKPT arguments.

    Raises:
        ValueError: no checkpoint, ``names`` of another length, or two checkpoints with one name.
        FileNotFoundError: a checkpoint file that does not exist (named).
    """
    if not specs:
        raise ValueError('give at least one checkpoint (a file, NAME=FILE or random)')
    if names is not None and len(names) != len(specs):
        raise ValueError(f'--names gives {len(names)} names for {len(specs)} checkpoints')
    parsed = []
    for spec in specs:
        name, path = None, spec
        if '=' in spec and not osp.exists(spec):
            head, tail = spec.split('=', 1)
            if head and tail and '/' not in head and os.sep not in head:
                name, path = head, tail
        if path != RANDOM and not osp.isfile(path):
            raise FileNotFoundError(
                f'checkpoint {path!r} not found (give a checkpoint file, NAME=FILE or random)')
        parsed.append([name, path])
    if names is not None:
        for item, name in zip(parsed, names):
            item[0] = name
    _default_names(parsed)
    seen = [n for n, _ in parsed]
    dups = sorted({n for n in seen if seen.count(n) > 1})
    if dups:
        raise ValueError(f'two checkpoints are named {dups}; name them with NAME=FILE or --names')
    return [(n, p) for n, p in parsed]


def _default_names(parsed: List[list]) -> None:
    """Unnamed checkpoints: ``random`` or the file's stem; the parent folder added on clashes."""
    for item in parsed:
        if item[0] is None:
            item[0] = RANDOM if item[1] == RANDOM else \
                osp.splitext(osp.basename(item[1]))[0]
    stems = [n for n, _ in parsed]
    for item in parsed:
        if item[1] != RANDOM and stems.count(item[0]) > 1 and \
                item[0] == osp.splitext(osp.basename(item[1]))[0]:
            parent = osp.basename(osp.dirname(osp.abspath(item[1])))
            item[0] = f'{parent}_{item[0]}'


def safe_name(name: str) -> str:
    """``name`` usable in a file name (``tsne_<name>.png``)."""
    return re.sub(r'[^\w.+-]+', '_', name).strip('_') or 'model'


def load_analysis_config(config: str, cfg_options: Optional[dict] = None,
                         train_folder: Optional[str] = None, val_folder: Optional[str] = None
                         ) -> Tuple[Config, Config]:
    """The config (with ``cfg_options`` merged) and its ``knn_eval`` section (checked;
    ``train_folder`` / ``val_folder``: labelled folders replace its data).

    Also makes the config's ``default_scope`` current (as :func:`build_model` does), so the
    ``knn_eval`` loaders can be built before any model.
    """
    from mmengine.registry import DefaultScope
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    knn = _knn_cfg(cfg, config, train_folder, val_folder)
    if not DefaultScope.check_instance_created('mmssl_knn_eval'):
        DefaultScope.get_instance('mmssl_knn_eval',
                                  scope_name=cfg.get('default_scope', 'mmpretrain'))
    return cfg, knn


def load_model(cfg: Config, checkpoint: str, seed: int = 0) -> torch.nn.Module:
    """The config's model (seeded random init) with ``checkpoint``'s backbone, in eval mode.

    ``checkpoint='random'`` keeps the random initialisation.  A checkpoint that does not fit the
    backbone raises :func:`~mmssl_ext.utils.checkpoint.load_backbone_weights`' ``ValueError``.
    """
    model = build_model(cfg, seed)
    if checkpoint != RANDOM:
        load_backbone_weights(model, checkpoint)
    return model.eval()


def subset_indices(total: int, num: Optional[int], seed: int = 0) -> Optional[List[int]]:
    """A seeded random subset of ``range(total)`` of size ``num`` (sorted); None for all."""
    if num is None or num >= total:
        return None
    if num < 1:
        raise ValueError(f'the subset size must be >= 1, got {num}')
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(total, generator=gen)[:num].tolist())


def subset_loader(loader: DataLoader, num: Optional[int], seed: int = 0) -> DataLoader:
    """``loader`` restricted to a seeded subset of ``num`` samples, in dataset order.

    The same ``(num, seed)`` gives the same samples for every checkpoint.  The loader is returned
    unchanged when ``num`` is None or covers the whole dataset.
    """
    idx = subset_indices(len(loader.dataset), num, seed)
    if idx is None:
        return loader
    batch_size = loader.batch_size
    if batch_size is None:
        batch_size = getattr(loader.batch_sampler, 'batch_size', 1)
    return DataLoader(Subset(loader.dataset, idx), batch_size=batch_size, shuffle=False,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      worker_init_fn=loader.worker_init_fn, pin_memory=loader.pin_memory)


def build_split_loader(knn: Config, split: str, num: Optional[int] = None,
                       seed: int = 0) -> DataLoader:
    """``knn_eval``'s ``train`` (probe-train) or ``val`` (test) loader, optionally subsetted."""
    key = {'train': 'train_dataloader', 'val': 'val_dataloader'}[split]
    return subset_loader(build_dataloader(knn[key], seed=seed), num, seed)


def class_names(loader: DataLoader) -> Optional[List[str]]:
    """The dataset's ``metainfo['classes']`` (through a ``Subset``), if it has them."""
    dataset = loader.dataset
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    meta = getattr(dataset, 'metainfo', None) or {}
    classes = meta.get('classes') if hasattr(meta, 'get') else None
    return list(classes) if classes else None


def common_parser(tool: str, description: str) -> argparse.ArgumentParser:
    """The arguments every analysis tool takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('config', help='config with the model and a knn_eval section')
    p.add_argument('checkpoints', nargs='+', metavar='CKPT',
                   help="checkpoint file (full or backbone-only), NAME=FILE, or 'random'")
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'analysis', tool),
                   help=f'where the PNGs and {tool}.json go (default work_dirs/analysis/{tool})')
    p.add_argument('--names', nargs='+', help='names of the checkpoints, in order')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the random init, the subsets and the random transforms')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override settings of the config, xxx=yyy')
    return p


def quiet_init_logs() -> None:
    """Keep mmengine's per-parameter ``init_weights`` report (INFO) out of a CLI's output."""
    import logging

    from mmengine.logging import MMLogger
    name = 'mmssl_analysis_cli'
    if MMLogger.check_instance_created(name):  # a second call in one process
        MMLogger.get_instance(name).setLevel(logging.WARNING)
    else:
        MMLogger.get_instance(name, log_level='WARNING')


def remote_vis_backends(cfg: Config) -> List[dict]:
    """The config's visualizer backends that leave the work directory (TensorBoard, W&B, ...):
    every backend but ``LocalVisBackend``, which the PNG files already are."""
    vis = cfg.get('visualizer', None) or {}
    return [dict(b) for b in vis.get('vis_backends', None) or []
            if str(b.get('type', '')).split('.')[-1] != 'LocalVisBackend']


@contextlib.contextmanager
def remote_visualizer(cfg: Optional[Config], work_dir: str) -> Iterator:
    """A visualizer with the config's remote backends, saving under ``work_dir/vis_data``
    (None when there are none), closed on exit."""
    backends = remote_vis_backends(cfg) if cfg is not None else []
    if not backends:
        yield None
        return
    from mmengine.visualization import Visualizer
    vis = Visualizer(name=f'mmssl_analysis_{next(_VIS_COUNT)}', vis_backends=backends,
                     save_dir=work_dir)
    try:
        yield vis
    finally:
        vis.close()


def publish_figures(cfg: Optional[Config], work_dir: str, paths: Sequence[str],
                    step: int = 0) -> int:
    """Send the PNG ``paths`` to the config's remote visualizer backends as images named after
    their files (``configs/_base_/tensorboard.py``: event files in ``work_dir/vis_data``).

    Returns the number of images sent (0 when the config has only the local backend).
    """
    import numpy as np
    from PIL import Image
    with remote_visualizer(cfg, work_dir) as vis:
        if vis is None or not paths:
            return 0
        for path in paths:
            with Image.open(path) as img:
                vis.add_image(osp.splitext(osp.basename(path))[0],
                              np.asarray(img.convert('RGB')), step=step)
    return len(paths)


def publish_scalars(cfg: Optional[Config], work_dir: str, scalars: dict, step: int = 0) -> int:
    """Send the numeric entries of ``scalars`` to the config's remote backends; returns how
    many were sent."""
    numbers = {k: float(v) for k, v in scalars.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with remote_visualizer(cfg, work_dir) as vis:
        if vis is None or not numbers:
            return 0
        vis.add_scalars(numbers, step=step)
    return len(numbers)


def write_json(obj, path: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)
    return path
