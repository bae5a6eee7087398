"""The fit step (an ordinary mmpretrain ``ImageClassifier`` trained from scratch on the pseudo
labels), the distillation step (the same on soft targets) and ``run`` (cluster -> fit ->
backbone).  A step loads its config once, points it at the step's files and trains it with the
runner every entry point uses (:func:`mmssl_ext.engine.runner.build_runner`)."""
import copy
import dataclasses
import os.path as osp
from typing import List, Optional, Tuple

import numpy as np
from mmengine.config import Config

from mmssl_ext.datasets.subset import read_annotation
from mmssl_ext.engine.runner import build_runner, merge_train_options
from mmssl_ext.utils.checkpoint import extract_backbone
from mmssl_ext.utils.config import load_config
from . import formats as F
from .cluster_step import cluster
from .options import ImageSource, KMeansOptions, NPreSpec, TrainOptions


# ------------------------------------------------------------------------------ overrides
def _image_location(summary: Optional[dict], cfg: Config) -> Tuple[str, str]:
    """``(data_root, data_prefix)`` of the images a step read: from its summary, else from the
    training config."""
    if summary is not None:
        root = summary['data']['data_root_abs']
        prefix = summary['data']['data_prefix'] if root else summary['data']['img_prefix_abs']
    else:
        ds = cfg.train_dataloader.dataset
        root, prefix = ds.get('data_root', ''), ds.get('data_prefix', '')
        if isinstance(prefix, dict):
            prefix = prefix.get('img_path', '')
    return root, prefix


def _check_images_exist(ann: str, rows: List[Tuple[str, int]], root: str, prefix: str,
                        what: str = 'the fit step must read the images the cluster step '
                        'clustered') -> None:
    img_dir = osp.join(root, prefix) if root else prefix
    missing = [p for p, _ in rows if not osp.isfile(osp.join(img_dir, p))]
    if missing:
        raise FileNotFoundError(f'{ann}: {len(missing)} of {len(rows)} images are not under '
                                f'{img_dir} (first: {missing[0]}); {what}')


def _num_classes_opts(cfg: Config, num_classes: int) -> dict:
    opts = {'model.head.num_classes': num_classes}
    if cfg.model.get('data_preprocessor', None) is not None:
        opts['model.data_preprocessor.num_classes'] = num_classes
    if cfg.get('data_preprocessor', None) is not None:
        opts['data_preprocessor.num_classes'] = num_classes
    return opts


def fit_overrides(clusters: str, cfg: Config) -> dict:
    """``--cfg-options`` that point a fit config at a cluster step's output.

    Sets the annotation file, the image folder the clustering read (so the fit trains on the same
    image list) and K (head, data preprocessor).  Checks that every listed image exists.
    """
    ann, summary = F.read_clusters(clusters)
    rows = read_annotation(ann)
    labels = np.asarray([y for _, y in rows])
    if summary is not None:
        k = int(summary['k'])
        if labels.max() >= k:
            raise ValueError(f'{ann} has cluster id {labels.max()} >= k={k} of its summary')
    else:
        k = int(labels.max()) + 1
    root, prefix = _image_location(summary, cfg)
    _check_images_exist(ann, rows, root, prefix)
    opts = {
        'train_dataloader.dataset.ann_file': ann,
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.data_prefix': prefix,
    }
    opts.update(_num_classes_opts(cfg, k))
    return opts


def distill_overrides(soft: str, cfg: Config) -> dict:
    """``--cfg-options`` that point a distillation config at a soft-target step's output:
    annotation + soft-target files, image folder, number of classes and the loss temperature."""
    ann, npy, summary = F.read_soft_targets(soft)
    ds_type = cfg.train_dataloader.dataset.get('type')
    if ds_type != 'SoftLabelDataset':
        raise ValueError(f'the distillation config trains on {ds_type}; it needs '
                         f"train_dataloader.dataset.type='SoftLabelDataset' to serve the soft "
                         f'targets (see configs/clusterfit/clusterfit-distill_*.py)')
    rows = read_annotation(ann)
    shape = np.load(npy, mmap_mode='r').shape
    if shape[0] != len(rows):
        raise ValueError(f'{npy} has {shape[0]} rows but {ann} lists {len(rows)} images')
    root, prefix = _image_location(summary, cfg)
    _check_images_exist(ann, rows, root, prefix, 'the distillation must read the images '
                        'the soft-target step scored')
    opts = {
        'train_dataloader.dataset.ann_file': ann,
        'train_dataloader.dataset.soft_targets': npy,
        'train_dataloader.dataset.data_root': root,
        'train_dataloader.dataset.data_prefix': prefix,
    }
    opts.update(_num_classes_opts(cfg, int(shape[1])))
    loss = cfg.model.head.get('loss', None)
    if loss is not None and loss.get('type') == 'DistillationKLLoss':
        opts['model.head.loss.temperature'] = float(summary['temperature'])
    return opts


# ------------------------------------------------------------------------------ training
def prepare_config(config: str, opts: dict, options: Optional[TrainOptions] = None,
                   cfg: Optional[Config] = None) -> Config:
    """``config`` (or its already loaded ``cfg``) as ``tools/train.py`` would train it with
    ``--cfg-options`` = ``opts`` and then the user's ``options.cfg_options`` (which win)."""
    options = options or TrainOptions()
    cfg = load_config(config) if cfg is None else cfg
    merged = dict(opts)
    merged.update(options.cfg_options or {})
    return merge_train_options(cfg, config, merged, **options.runner_kwargs())


def train_config(cfg: Config) -> dict:
    """Train a prepared config; returns its work dir, last checkpoint and the config."""
    runner = build_runner(cfg)
    runner.train()
    last = osp.join(cfg.work_dir, 'last_checkpoint')
    checkpoint = open(last).read().strip() if osp.isfile(last) else None
    return dict(work_dir=cfg.work_dir, checkpoint=checkpoint, cfg=cfg)


def _probe(config: str, options: TrainOptions) -> Tuple[Config, Config]:
    """The config, loaded once, and a copy with the user's options for the step to read (so
    the step's overrides see, e.g., the user's data root)."""
    cfg = load_config(config)
    probe = copy.deepcopy(cfg)
    if options.cfg_options:
        probe.merge_from_dict(options.cfg_options)
    return cfg, probe


def prepare_fit_config(config: str, clusters: str,
                       options: Optional[TrainOptions] = None) -> Config:
    """The fit config pointed at the pseudo labels of ``clusters``, ready to train."""
    options = options or TrainOptions()
    cfg, probe = _probe(config, options)
    return prepare_config(config, fit_overrides(clusters, probe), options, cfg)


def fit(config: str, clusters: str, options: Optional[TrainOptions] = None) -> dict:
    """The fit step: train ``config`` from scratch on the pseudo labels of ``clusters``."""
    out = train_config(prepare_fit_config(config, clusters, options))
    cfg = out.pop('cfg')
    return dict(out, num_classes=cfg.model.head.num_classes,
                ann_file=cfg.train_dataloader.dataset.ann_file)


def distill(config: str, soft: str, options: Optional[TrainOptions] = None) -> dict:
    """Train a distillation config (``SoftLabelDataset`` + ``DistillationKLLoss``) from scratch
    on the soft targets in ``soft``; the loss temperature is the one they were made with."""
    options = options or TrainOptions()
    cfg, probe = _probe(config, options)
    opts = distill_overrides(soft, probe)
    t_soft = opts.get('model.head.loss.temperature')
    t_user = (options.cfg_options or {}).get('model.head.loss.temperature')
    if t_soft is not None and t_user is not None and float(t_user) != t_soft:
        from mmengine.logging import print_log
        print_log(f'distill: loss temperature {t_user} (--cfg-options) differs from the T={t_soft} '
                  f'the soft targets were made with', logger='current', level=30)
    out = train_config(prepare_config(config, opts, options, cfg))
    cfg = out.pop('cfg')
    return dict(out, num_classes=cfg.model.head.num_classes,
                temperature=cfg.model.head.loss.get('temperature'),
                ann_file=cfg.train_dataloader.dataset.ann_file,
                soft_targets=cfg.train_dataloader.dataset.soft_targets)


# ------------------------------------------------------------------------------ run (chain)
def run(config: str, npre: NPreSpec, kmeans: KMeansOptions,
        images: Optional[ImageSource] = None, options: Optional[TrainOptions] = None,
        progress: bool = True) -> dict:
    """cluster -> fit -> extract backbone, in ``options.work_dir`` (default
    ``work_dirs/<config name>``).  ``config`` is the fit config; its ``knn_eval`` train split
    (with the user's ``cfg_options``) is the default image set of the cluster step."""
    options = options or TrainOptions()
    work_dir = options.work_dir or osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    options = dataclasses.replace(options, work_dir=work_dir)
    images = (images or ImageSource()).or_config(config, options.cfg_options)
    summary = cluster(work_dir, npre, images, kmeans, progress=progress)
    fitted = fit(config, work_dir, options)
    if fitted['checkpoint'] is None:
        raise RuntimeError(f'the fit step wrote no checkpoint into {work_dir} (is the '
                           f'CheckpointHook interval larger than the schedule?)')
    backbone = osp.join(work_dir, F.BACKBONE_FILE)
    info = extract_backbone(fitted['checkpoint'], backbone)
    out = dict(work_dir=work_dir, ann_file=osp.join(work_dir, F.ANN_FILE),
               summary=osp.join(work_dir, F.SUMMARY_FILE),
               centroids=osp.join(work_dir, F.CENTROIDS_FILE),
               checkpoint=fitted['checkpoint'], backbone=backbone,
               k=summary['k'], num_samples=summary['num_samples'],
               backbone_tensors=info['num_tensors'])
    return out
