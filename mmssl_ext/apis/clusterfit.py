"""``tools/clusterfit.py``: ClusterFit (Yan et al., CVPR 2020) as three sub-commands.

* ``cluster`` — extract globally pooled features of a training set with a pretrained network
  N_pre, L2-normalise (optionally PCA), faiss k-means with K clusters, and write the cluster ids
  as pseudo labels in mmpretrain's annotation format.  N_pre is any of

  - an mmssl_ext / mmpretrain config + a full training checkpoint (``--config C --checkpoint X``),
  - the same config + a backbone-only checkpoint from ``tools/extract_backbone.py``,
  - a torchvision model with local weights (``--torchvision resnet18 --weights r18.pth``;
    nothing is ever downloaded; the file is read with the safe loader).

  The images come from the ``knn_eval.train_dataloader`` of ``--data-config`` (default: the
  N_pre config; ``configs/_base_/datasets/fmnist_knn.py`` defines one for Fashion-MNIST) or from
  an explicit ``--data-root [--ann-file] [--data-prefix]``.  ``--out-dir`` receives
  ``train_clusters.txt`` (``relative/path.png <cluster id>`` per line, relative to the data
  prefix: ``CustomDataset(data_root=..., data_prefix=..., ann_file=...)`` reads it),
  ``centroids.npy``, ``summary.json`` (K, N, cluster sizes, objective, re-seeded empty clusters,
  source model, data location, timings) and, on request, ``features.npy`` / ``pca.npz``.
* ``fit`` — ``tools/train.py`` on a fit config (an ordinary mmpretrain ``ImageClassifier``
  trained from scratch), pointed at the annotation file, the clustered image folder and K.
* ``run`` — cluster -> fit -> extract the backbone, in one command.
* ``soft-targets`` — the distillation baseline's targets: N_pre's *soft* predictions,
  ``softmax(logits / T)`` of an mmpretrain ImageClassifier (``--config C --checkpoint X``), or,
  for a self-supervised N_pre, ``softmax(cos(feature, centroid_k) / T)`` over the centroids of a
  cluster step (``--clusters DIR``).  ``--out-dir`` receives ``soft_targets.npy`` (N x C),
  ``train_soft.txt`` (the same N images in the same order, ``path argmax``) and
  ``soft_targets.json`` (mode, T, source, statistics).
* ``distill`` — ``tools/train.py`` on a distillation config (``SoftLabelDataset`` +
  ``DistillationKLLoss``) pointed at a soft-target folder; the loss temperature is the T the
  targets were made with.
* ``noise-control`` — the paper's label-noise control experiment (Fig. 6) in miniature, see
  :mod:`mmssl_ext.apis.clusterfit_control`.

Examples::

    python tools/clusterfit.py cluster --config configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \\
        --checkpoint work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth --k 100 \\
        --out-dir work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist
    python tools/clusterfit.py fit configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \\
        --clusters work_dirs/clusterfit-fit_r18-w32_1xb64-3000it_fmnist
    python tools/clusterfit.py run configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \\
        --torchvision resnet18 --weights r18.pth --k 100
    python tools/clusterfit.py soft-targets --config CLS_CONFIG --checkpoint CLS.pth \\
        --temperature 4 --out-dir work_dirs/soft
    python tools/clusterfit.py distill \\
        configs/clusterfit/clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py \\
        --soft-targets work_dirs/soft
"""
import argparse
import copy
import json
import os
import os.path as osp
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config, DictAction

import mmssl_ext  # noqa: F401  registers everything
from mmssl_ext.clustering import KMeansResult, kmeans
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.utils.checkpoint import check_keys, load_checkpoint_safe
from mmssl_ext.utils.config import build_dataloader, load_config

ANN_FILE = 'train_clusters.txt'
SUMMARY_FILE = 'summary.json'
CENTROIDS_FILE = 'centroids.npy'
FEATURES_FILE = 'features.npy'
PCA_FILE = 'pca.npz'
BACKBONE_FILE = 'backbone.pth'
SOFT_TARGETS_FILE = 'soft_targets.npy'
SOFT_ANN_FILE = 'train_soft.txt'
SOFT_SUMMARY_FILE = 'soft_targets.json'
#: default temperatures: classifier logits (Hinton's KD range) / cosine similarities in [-1, 1]
DEFAULT_SOFT_TEMPERATURE = dict(logits=4.0, centroids=0.1)

#: ImageNet RGB statistics, the normalisation of every torchvision classification model
TORCHVISION_MEAN = [123.675, 116.28, 103.53]
TORCHVISION_STD = [58.395, 57.12, 57.375]


# ------------------------------------------------------------------------------ N_pre
class TorchvisionBackbone(nn.Module):
    """A torchvision classifier as a backbone that returns a tuple of feature maps.

    ResNet-like models (``layer1`` .. ``layer4``) return the four stage outputs, so ``layer``
    picks one; every other model returns the input of its classifier (``fc``, ``classifier``
    or ``heads``, replaced by ``Identity``).
    """

    HEADS = ('fc', 'classifier', 'heads', 'head')

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.net = net
        self.name = name
        self.staged = all(hasattr(net, f'layer{i}') for i in range(1, 5)) and hasattr(net, 'conv1')
        if not self.staged:
            for head in self.HEADS:
                if hasattr(net, head):
                    setattr(net, head, nn.Identity())
                    break
            else:
                raise ValueError(f'torchvision model {name!r} has none of the classifier '
                                 f'attributes {self.HEADS}; cannot tell where its features are')

    @property
    def num_stages(self) -> int:
        return 4 if self.staged else 1

    def forward(self, x):
        if not self.staged:
            return (self.net(x), )
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        outs = []
        for i in range(1, 5):
            x = getattr(n, f'layer{i}')(x)
            outs.append(x)
        return tuple(outs)


class TorchvisionFeatureModel(nn.Module):
    """``data_preprocessor`` (ImageNet normalisation, BGR->RGB) + :class:`TorchvisionBackbone`,
    the interface :func:`~mmssl_ext.evaluation.features.extract_features` needs."""

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        from mmpretrain.models import ClsDataPreprocessor
        self.data_preprocessor = ClsDataPreprocessor(mean=TORCHVISION_MEAN, std=TORCHVISION_STD,
                                                     to_rgb=True)
        self.backbone = TorchvisionBackbone(net, name)


def load_torchvision_weights(net: nn.Module, weights: str, name: str) -> Dict[str, list]:
    """Load a local state dict (plain, ``{'state_dict': ...}`` or DDP-prefixed) into ``net``.

    Classifier weights (``fc.*`` ...) are optional and ignored; every other weight must be there
    with the right shape.
    """
    ckpt = load_checkpoint_safe(weights)
    state = ckpt
    if isinstance(ckpt, dict):
        for key in ('state_dict', 'model'):
            if isinstance(ckpt.get(key), dict):
                state = ckpt[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ValueError(f'{weights}: expected a state dict of tensors (torch.save('
                         f'model.state_dict())), got {type(state).__name__}')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    heads = tuple(h + '.' for h in TorchvisionBackbone.HEADS)
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(heads)}
    body = {k: v for k, v in state.items() if not k.startswith(heads)}
    report = check_keys(own, body, model_name=name)
    missing, unexpected, mismatched = (report['missing'], report['unexpected'],
                                       report['mismatched'])
    if missing or unexpected or mismatched:
        raise ValueError(
            f'{weights} does not fit torchvision {name}: {len(missing)} weights missing (e.g. '
            f'{missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), '
            f'{len(mismatched)} of another shape (e.g. {mismatched[:2]})')
    net.load_state_dict(body, strict=False)
    return dict(loaded=len(body), ignored_head=sorted(set(state) - set(body)))


def build_torchvision_model(name: str, weights: Optional[str]) -> Tuple[nn.Module, dict]:
    """torchvision ``name`` with local ``weights`` (``'random'``: keep the random init)."""
    import torchvision
    if not weights:
        raise ValueError(f'--torchvision {name} needs --weights: a local state-dict file (e.g. '
                         f'torch.save(torchvision.models.{name}().state_dict(), path)); '
                         f"mmssl_ext never downloads weights ('random' keeps the random init)")
    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError:
        known = sorted(torchvision.models.list_models(torchvision.models))
        raise ValueError(f'unknown torchvision model {name!r}; classification models are '
                         f'{known}') from None
    info = dict(kind='torchvision', name=name,
                weights='random' if weights == 'random' else osp.abspath(weights))
    if weights != 'random':
        info.update(load_torchvision_weights(net, weights, name))
        info.pop('loaded')
    return TorchvisionFeatureModel(net, name), info


def build_config_model(config: str, checkpoint: Optional[str], layer: int = -1,
                       cfg_options: Optional[dict] = None, seed: int = 0
                       ) -> Tuple[nn.Module, Config, dict]:
    """Model of an mmssl_ext / mmpretrain config with a full or backbone-only checkpoint."""
    from mmssl_ext.apis.knn_eval import build_model, load_backbone_weights
    if not checkpoint:
        raise ValueError(f'--config {config} needs --checkpoint (a full training checkpoint, a '
                         f"backbone-only file from tools/extract_backbone.py, or 'random')")
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if layer != -1:
        backbone = cfg.model.get('backbone', None)
        if backbone is None or 'ResNet' not in str(backbone.get('type', '')):
            raise ValueError(f'--layer {layer}: only ResNet backbones (out_indices) support an '
                             f'earlier stage; {config} has backbone '
                             f'{None if backbone is None else backbone.get("type")}')
        stages = backbone.get('num_stages', 4)
        if not 0 <= layer < stages:
            raise ValueError(f'--layer must be -1 (last) or a stage index in [0, {stages - 1}], '
                             f'got {layer}')
        backbone['out_indices'] = (layer, )
    model = build_model(cfg, seed)
    info = dict(kind='config', config=config,
                checkpoint='random' if checkpoint == 'random' else osp.abspath(checkpoint))
    if checkpoint != 'random':
        load_backbone_weights(model, checkpoint)
    return model, cfg, info


# ------------------------------------------------------------------------------ data
def _pipeline(img_size: int, crop_ratio: Optional[float]) -> list:
    if crop_ratio:  # ImageNet evaluation: short side to size / ratio, centre crop
        return [dict(type='LoadImageFromFile'),
                dict(type='ResizeEdge', scale=int(round(img_size / crop_ratio)), edge='short'),
                dict(type='CenterCrop', crop_size=img_size),
                dict(type='PackInputs')]
    return [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(img_size, img_size)),
            dict(type='PackInputs')]


def _has_labels(ann_path: str) -> bool:
    with open(ann_path) as f:
        for line in f:
            if line.strip():
                parts = line.strip().rsplit(' ', 1)
                return len(parts) == 2 and parts[1].lstrip('-').isdigit()
    return False


def cluster_loader_cfg(data_cfg: Optional[Config] = None, data_cfg_name: str = '',
                       data_root: Optional[str] = None, ann_file: Optional[str] = None,
                       data_prefix: Optional[str] = None, img_size: int = 32,
                       crop_ratio: Optional[float] = None, batch_size: Optional[int] = None,
                       num_workers: Optional[int] = None,
                       num_samples: Optional[int] = None) -> dict:
    """Dataloader config for the images to cluster, in a fixed (non-shuffled) order."""
    if data_root is not None:
        with_label = True  # a folder tree without list file: labels from the sub-folders
        if ann_file:
            path = ann_file if osp.isabs(ann_file) else osp.join(data_root, ann_file)
            if not osp.isfile(path):
                raise FileNotFoundError(f'--ann-file {ann_file}: {path} does not exist')
            with_label = _has_labels(path)  # a plain list of paths works too
        dataset = dict(type='CustomDataset', data_root=data_root, ann_file=ann_file or '',
                       data_prefix=data_prefix or '', with_label=with_label,
                       pipeline=_pipeline(img_size, crop_ratio))
        loader = dict(batch_size=batch_size or 64, num_workers=2, dataset=dataset,
                      collate_fn=dict(type='default_collate'))
    else:
        if data_cfg is None:
            raise ValueError('no images to cluster: pass --data-config (a config with a '
                             'knn_eval section), --config, or --data-root [--ann-file] '
                             '[--data-prefix]')
        knn = data_cfg.get('knn_eval', None)
        if knn is None or 'train_dataloader' not in knn:
            raise KeyError(f'{data_cfg_name} has no `knn_eval.train_dataloader` to take the '
                           f"images from: inherit 'configs/_base_/datasets/fmnist_knn.py', pass "
                           f'--data-config, or --data-root [--ann-file] [--data-prefix]')
        loader = copy.deepcopy(knn['train_dataloader'])
        loader = loader.to_dict() if hasattr(loader, 'to_dict') else dict(loader)
    loader['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader['persistent_workers'] = False
    if batch_size:
        loader['batch_size'] = batch_size
    if num_workers is not None:
        loader['num_workers'] = num_workers
    if num_samples:
        loader['dataset']['indices'] = int(num_samples)
    return loader


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


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (arithmetic mean normalisation) of two labelings."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    cont = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.float64)
    np.add.at(cont, (ai, bi), 1)
    p = cont / cont.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum()
    ha = -(pa[pa > 0] * np.log(pa[pa > 0])).sum()
    hb = -(pb[pb > 0] * np.log(pb[pb > 0])).sum()
    denom = (ha + hb) / 2
    return float(mi / denom) if denom > 0 else 1.0


def write_annotation(path: str, rel_paths: List[str], labels: np.ndarray) -> None:
    with open(path, 'w') as f:
        for p, y in zip(rel_paths, labels):
            f.write(f'{p} {int(y)}\n')


# ------------------------------------------------------------------------------ cluster
def cluster(out_dir: str, k: int, config: Optional[str] = None, **kwargs) -> dict:
    """The cluster step; returns the summary (also written to ``out_dir/summary.json``).

    Keyword arguments as :func:`cluster_step` (the CLI flags of ``tools/clusterfit.py
    cluster``).  Nothing is written unless every step succeeds: the files are assembled in a
    temporary folder and moved into ``out_dir`` at the end (``summary.json`` last).
    """
    from mmengine.registry import DefaultScope
    scope = 'mmpretrain'
    if config is not None:
        scope = load_config(config).get('default_scope', None) or scope
    with DefaultScope.overwrite_default_scope(scope):
        return cluster_step(out_dir, k, config=config, **kwargs)


def cluster_step(out_dir: str,
                 k: int,
                 config: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 torchvision: Optional[str] = None,
                 weights: Optional[str] = None,
                 layer: int = -1,
                 pool: str = 'avg',
                 data_config: Optional[str] = None,
                 data_root: Optional[str] = None,
                 ann_file: Optional[str] = None,
                 data_prefix: Optional[str] = None,
                 img_size: int = 32,
                 crop_ratio: Optional[float] = None,
                 num_samples: Optional[int] = None,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None,
                 niter: int = 20,
                 seed: int = 0,
                 pca_dim: Optional[int] = None,
                 whiten: bool = False,
                 l2_normalize: bool = True,
                 save_features: bool = False,
                 cfg_options: Optional[dict] = None,
                 data_cfg_options: Optional[dict] = None,
                 progress: bool = True) -> dict:
    """:func:`cluster` without setting the default registry scope."""
    t_start = time.perf_counter()
    if (config is None) == (torchvision is None):
        raise ValueError('give the pretrained network either as --config C --checkpoint X or '
                         'as --torchvision NAME --weights FILE (exactly one of them)')
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f'--k (number of clusters) must be an integer >= 1, got {k}')
    # the images, first: a bad K is reported before any model is built
    images = build_image_loader(config, data_config, data_root, ann_file, data_prefix, img_size,
                                crop_ratio, batch_size, num_workers, num_samples, cfg_options,
                                data_cfg_options, seed)
    n = len(images.dataset)
    if k > n:
        raise ValueError(f'cannot make k={k} clusters from {n} images '
                         f'({images.dataset.data_prefix.get("img_path", "")}): k must not exceed '
                         f'the number of images ({n})')

    # the pretrained network
    model, source, stage = build_pretrained(config, checkpoint, torchvision, weights, layer, pool,
                                            cfg_options, seed)
    t = time.perf_counter()
    if progress:
        print(f'extracting features of {n} images with {source.get("name") or source["config"]}')
    feats, _ = extract_features(model, images.loader, stage=stage, pool=pool, normalize=False,
                                progress=progress)
    t_extract = time.perf_counter() - t
    if len(feats) != n:
        raise RuntimeError(f'extracted {len(feats)} features for {n} images')
    return cluster_features(out_dir, feats.numpy(), k, images, source, niter=niter, seed=seed,
                            pca_dim=pca_dim, whiten=whiten, l2_normalize=l2_normalize,
                            save_features=save_features, timings=dict(extract_s=round(
                                t_extract, 2)), t_start=t_start, progress=progress)


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

    def summary(self) -> dict:
        """The ``data`` entry of a summary: where the images are (read back by fit / distill)."""
        root, prefix = self.root, self.img_prefix
        return dict(data_root=root, data_root_abs=osp.abspath(root) if root else '',
                    img_prefix=prefix, img_prefix_abs=osp.abspath(prefix),
                    data_prefix=osp.relpath(prefix, root) if root else prefix,
                    dataset=type(self.dataset).__name__,
                    from_config=self.data_name if self.from_config else None,
                    num_samples=self.num_samples)


def build_image_loader(config: Optional[str] = None,
                       data_config: Optional[str] = None,
                       data_root: Optional[str] = None,
                       ann_file: Optional[str] = None,
                       data_prefix: Optional[str] = None,
                       img_size: int = 32,
                       crop_ratio: Optional[float] = None,
                       batch_size: Optional[int] = None,
                       num_workers: Optional[int] = None,
                       num_samples: Optional[int] = None,
                       cfg_options: Optional[dict] = None,
                       data_cfg_options: Optional[dict] = None,
                       seed: int = 0) -> ImageList:
    """The (non-shuffled) images: ``--data-root ...``, else ``knn_eval.train_dataloader`` of
    ``data_config`` (default: ``config``, with ``cfg_options``)."""
    model_cfg = None
    if config is not None:
        model_cfg = load_config(config)
        if cfg_options:
            model_cfg.merge_from_dict(cfg_options)
    if data_config is not None:
        data_cfg, data_name = load_config(data_config), data_config
        if data_cfg_options:
            data_cfg.merge_from_dict(data_cfg_options)
    else:
        data_cfg, data_name = model_cfg, config
    loader_cfg = cluster_loader_cfg(
        None if data_root is not None else data_cfg, data_name, data_root, ann_file,
        data_prefix, img_size, crop_ratio, batch_size, num_workers, num_samples)
    loader = build_dataloader(loader_cfg, seed=seed)
    return ImageList(loader, data_name, num_samples, from_config=data_root is None)


def build_pretrained(config: Optional[str], checkpoint: Optional[str],
                     torchvision: Optional[str], weights: Optional[str], layer: int = -1,
                     pool: str = 'avg', cfg_options: Optional[dict] = None,
                     seed: int = 0) -> Tuple[nn.Module, dict, int]:
    """N_pre as a feature model on the best device: ``(model, source info, stage index)``."""
    if torchvision is not None:
        model, source = build_torchvision_model(torchvision, weights)
        stages = model.backbone.num_stages
        if layer != -1 and not 0 <= layer < stages:
            raise ValueError(f'--layer must be -1 (last) or a stage index in [0, {stages - 1}] '
                             f'for torchvision {torchvision}, got {layer}')
        stage = layer
    else:
        model, _, source = build_config_model(config, checkpoint, layer, cfg_options, seed)
        stage = -1  # out_indices already selects --layer
    source['layer'] = layer
    source['pool'] = pool
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device)
    model.data_preprocessor.to(device)
    return model, source, stage


def cluster_features(out_dir: str,
                     feats: np.ndarray,
                     k: int,
                     images: ImageList,
                     source: dict,
                     niter: int = 20,
                     seed: int = 0,
                     pca_dim: Optional[int] = None,
                     whiten: bool = False,
                     l2_normalize: bool = True,
                     save_features: bool = False,
                     timings: Optional[dict] = None,
                     t_start: Optional[float] = None,
                     progress: bool = True) -> dict:
    """k-means of already extracted features (row ``i`` = image ``i`` of ``images``) and the
    cluster-step files in ``out_dir``; the second half of :func:`cluster`."""
    t_start = time.perf_counter() if t_start is None else t_start
    n = len(images.rel_paths)
    if len(feats) != n:
        raise ValueError(f'{len(feats)} feature rows for {n} images')
    rel_paths, true_labels = images.rel_paths, images.labels
    if progress:
        print(f'k-means: {n} x {feats.shape[1]} features -> {k} clusters '
              f'({niter} iterations, pca_dim={pca_dim})')
    res: KMeansResult = kmeans(feats, int(k), niter=niter, seed=seed, pca_dim=pca_dim,
                               whiten=whiten, l2_normalize=l2_normalize, verbose=progress)

    summary = dict(
        k=int(k), num_samples=n, feature_dim=int(feats.shape[1]),
        clustered_dim=int(res.centroids.shape[1]), objective=res.objective,
        empty_clusters_reseeded=res.num_reseeded, reseeded_clusters=res.reseeded,
        sizes=[int(s) for s in res.sizes], min_size=int(res.sizes.min()),
        max_size=int(res.sizes.max()),
        kmeans=dict(niter=niter, seed=seed, pca_dim=pca_dim, whiten=whiten,
                    l2_normalize=l2_normalize, gpu=res.gpu,
                    objective_history=res.summary()['objective_history']),
        source=source,
        data=images.summary(),
        ann_file=ANN_FILE,
        timings=dict(dict(extract_s=0.0), **(timings or {}),
                     kmeans_s=round(res.timings.get('total', 0.0), 2)))
    if (true_labels >= 0).all():
        summary['nmi_vs_dataset_labels'] = round(nmi(res.assignments, true_labels), 4)
    largest = int(res.sizes.max())
    if k > 2 and largest > n / 2:
        # pseudo labels the fit step can learn little from; it happens with features that hardly
        # differ between images, e.g. a random-init ResNet with zero_init_residual=True (every
        # residual branch starts at zero: mmpretrain's default, and the ClusterFit fit config's)
        summary['warning'] = (
            f'the largest of the {k} clusters holds {largest} of the {n} images '
            f'({largest / n:.0%}): N_pre\'s features hardly separate the images (a random-init '
            f'ResNet with zero_init_residual=True, whose residual branches start at zero, does '
            f'this), so the fit step gets little to learn from these pseudo labels')
        from mmengine.logging import print_log
        print_log(f'cluster step: {summary["warning"]}', logger='current', level=30)

    def write(tmp):
        write_annotation(osp.join(tmp, ANN_FILE), rel_paths, res.assignments)
        np.save(osp.join(tmp, CENTROIDS_FILE), res.centroids)
        files = [ANN_FILE, CENTROIDS_FILE]
        if save_features:
            np.save(osp.join(tmp, FEATURES_FILE), feats)
            files.append(FEATURES_FILE)
        if res.pca is not None:
            np.savez(osp.join(tmp, PCA_FILE), A=res.pca.A, b=res.pca.b,
                     eigenvalues=res.pca.eigenvalues, whiten=res.pca.whiten)
            files.append(PCA_FILE)
        summary['files'] = files + [SUMMARY_FILE]
        summary['timings']['total_s'] = round(time.perf_counter() - t_start, 2)
        with open(osp.join(tmp, SUMMARY_FILE), 'w') as f:
            f.write(_summary_json(summary))
        return files + [SUMMARY_FILE]

    _write_atomically(out_dir, write)
    summary['out_dir'] = out_dir
    if progress:
        print(format_summary(summary))
    return summary


def _write_atomically(out_dir: str, write) -> None:
    """``write(tmp)`` fills a temporary folder next to ``out_dir`` and returns the file names;
    they are moved into ``out_dir`` (the last one last) only when all were written."""
    parent = osp.dirname(osp.abspath(out_dir)) or '.'
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.clusterfit-', dir=parent)
    try:
        files = write(tmp)
        os.makedirs(out_dir, exist_ok=True)
        for name in files:
            os.replace(osp.join(tmp, name), osp.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _summary_json(summary: dict) -> str:
    """Indented JSON with the (K-long) size list and the objective history on one line each."""
    s = copy.deepcopy(summary)
    sizes, hist = s['sizes'], s['kmeans']['objective_history']
    s['sizes'], s['kmeans']['objective_history'] = '@SIZES@', '@HISTORY@'
    text = json.dumps(s, indent=2)
    return text.replace('"@SIZES@"', json.dumps(sizes)).replace('"@HISTORY@"',
                                                                 json.dumps(hist)) + '\n'


def format_summary(s: dict) -> str:
    lines = [f'clustered {s["num_samples"]} images into K={s["k"]} clusters '
             f'(sizes {s["min_size"]}..{s["max_size"]}, objective {s["objective"]:.4g}, '
             f'{s["empty_clusters_reseeded"]} empty clusters re-seeded)']
    if 'nmi_vs_dataset_labels' in s:
        lines.append(f'NMI with the dataset labels: {s["nmi_vs_dataset_labels"]:.4f}')
    lines.append(f'features {s["timings"]["extract_s"]} s, k-means {s["timings"]["kmeans_s"]} s')
    out = s.get('out_dir', '.')
    lines.append(f'pseudo labels -> {osp.join(out, ANN_FILE)}  (images under '
                 f'{s["data"]["img_prefix"]})')
    lines.append(f'centroids     -> {osp.join(out, CENTROIDS_FILE)}')
    lines.append(f'summary       -> {osp.join(out, SUMMARY_FILE)}')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------ fit
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


def _read_rows(ann: str) -> List[List[str]]:
    """``[path, label]`` rows of an annotation file written by a cluster / soft-target step."""
    with open(ann) as f:
        rows = [line.rstrip('\n').rsplit(' ', 1) for line in f if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != 2 or not r[1].isdigit()]
    if bad:
        raise ValueError(f'{ann} line {bad[0] + 1}: expected "<relative path> <cluster id>"')
    return rows


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


def _check_images_exist(ann: str, rows: List[List[str]], root: str, prefix: str,
                        what: str = 'the fit step must read the images the cluster step '
                        'clustered') -> None:
    img_dir = osp.join(root, prefix) if root else prefix
    missing = [r[0] for r in rows if not osp.isfile(osp.join(img_dir, r[0]))]
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
    ann, summary = read_clusters(clusters)
    rows = _read_rows(ann)
    labels = np.asarray([int(r[1]) for r in rows])
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


def train_with_overrides(config: str, opts: dict, work_dir: Optional[str] = None,
                         cfg_options: Optional[dict] = None,
                         train_args: Optional[List[str]] = None) -> dict:
    """``tools/train.py config`` with ``opts`` and then the user's ``cfg_options`` merged in;
    returns the work dir and the last checkpoint."""
    from mmssl_ext.apis import train as train_api
    opts = dict(opts)
    opts.update(cfg_options or {})
    argv = [config] + (['--work-dir', work_dir] if work_dir else []) + list(train_args or [])
    args = train_api.parse_args(argv)
    args.cfg_options = opts
    cfg = train_api.merge_args(load_config(config), args)
    runner = train_api.build_runner(cfg)
    runner.train()
    last = osp.join(cfg.work_dir, 'last_checkpoint')
    checkpoint = open(last).read().strip() if osp.isfile(last) else None
    return dict(work_dir=cfg.work_dir, checkpoint=checkpoint, cfg=cfg)


def fit(config: str, clusters: str, work_dir: Optional[str] = None,
        cfg_options: Optional[dict] = None, train_args: Optional[List[str]] = None) -> dict:
    """The fit step: ``tools/train.py`` on ``config`` with the pseudo labels of ``clusters``."""
    probe = load_config(config)
    if cfg_options:
        probe.merge_from_dict(cfg_options)
    opts = fit_overrides(clusters, probe)  # the user's options see the cluster step's values
    out = train_with_overrides(config, opts, work_dir, cfg_options, train_args)
    cfg = out.pop('cfg')
    return dict(out, num_classes=cfg.model.head.num_classes,
                ann_file=cfg.train_dataloader.dataset.ann_file)


# ------------------------------------------------------------------------------ soft targets
def softmax_rows(x: np.ndarray, temperature: float, out_dtype=np.float32,
                 chunk_rows: int = 65536) -> np.ndarray:
    """Row-wise ``softmax(x / T)``, computed in float64 chunk by chunk."""
    if not temperature > 0:
        raise ValueError(f'--temperature must be positive, got {temperature}')
    out = np.empty(x.shape, dtype=out_dtype)
    for start in range(0, len(x), chunk_rows):
        z = np.asarray(x[start:start + chunk_rows], dtype=np.float64) / temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out[start:start + chunk_rows] = e / e.sum(axis=1, keepdims=True)
    return out


def soft_assignments(features, centroids: np.ndarray, temperature: float,
                     l2_normalize: bool = True, pca=None, out_dtype=np.float32) -> np.ndarray:
    """Soft cluster assignment ``softmax(cos(f, c_k) / T)`` over the k-means centroids.

    ``features`` are raw pooled features; they get the cluster step's preprocessing
    (L2-normalise, optional PCA, L2-normalise) before the cosine with the centroids.
    """
    from mmssl_ext.clustering import as_float32_matrix, normalize_rows, preprocess
    x = normalize_rows(preprocess(as_float32_matrix(features), l2_normalize, pca))
    c = normalize_rows(as_float32_matrix(centroids, 'centroids'))
    if x.shape[1] != c.shape[1]:
        raise ValueError(f'features have {x.shape[1]} dims after the cluster step\'s '
                         f'preprocessing, the centroids {c.shape[1]}: not the same N_pre / layer '
                         f'/ PCA as the cluster step')
    out = np.empty((len(x), len(c)), dtype=out_dtype)
    for start in range(0, len(x), 8192):
        out[start:start + 8192] = softmax_rows(x[start:start + 8192] @ c.T, temperature)
    return out


def build_classifier(config: str, checkpoint: str, cfg_options: Optional[dict] = None,
                     seed: int = 0) -> Tuple[nn.Module, dict]:
    """An mmpretrain ``ImageClassifier`` (backbone, neck, head) with ALL its weights loaded from
    a full training checkpoint (safe loader)."""
    from mmssl_ext.apis.knn_eval import build_model
    if not checkpoint or checkpoint == 'random':
        raise ValueError(f'logits soft targets need a trained classifier: --config {config} '
                         f'--checkpoint FULL_CHECKPOINT (got {checkpoint!r})')
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    from mmpretrain.models import ImageClassifier
    model = build_model(cfg, seed)
    if not isinstance(model, ImageClassifier) or getattr(model, 'head', None) is None:
        raise ValueError(
            f'{config}: model type {cfg.model.get("type")} has no classification head, so it '
            f'gives no logits; logits soft targets need an mmpretrain ImageClassifier config + '
            f'checkpoint.  For a self-supervised N_pre pass --clusters DIR (soft assignment to '
            f'the centroids of a cluster step)')
    ckpt = load_checkpoint_safe(checkpoint)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise ValueError(f'{checkpoint}: expected a state dict, got {type(state).__name__}')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    own = {k: v for k, v in model.state_dict().items()
           if k.startswith(('backbone.', 'neck.', 'head.'))}
    head_keys = [k for k in own if k.startswith('head.')]
    if head_keys and not any(k in state for k in head_keys):
        raise ValueError(f'{checkpoint} has no head weights (e.g. {head_keys[0]}): a backbone-'
                         f'only checkpoint gives no logits; use the full training checkpoint, '
                         f'or --clusters DIR for soft cluster assignments')
    report = check_keys(own, state)
    missing, mismatched = report['missing'], report['mismatched']
    if missing or mismatched:
        raise ValueError(f'{checkpoint} does not fit {config}: {len(missing)} weights missing '
                         f'(e.g. {missing[:3]}), {len(mismatched)} of another shape (e.g. '
                         f'{mismatched[:2]}); wrong config, num_classes or checkpoint')
    model.load_state_dict({k: state[k] for k in own}, strict=False)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device)
    info = dict(kind='classifier', config=config, checkpoint=osp.abspath(checkpoint),
                num_classes=int(cfg.model.head.get('num_classes', -1)))
    return model, info


@torch.no_grad()
def extract_logits(model: nn.Module, loader, pool: str = 'avg',
                   progress: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass of an ``ImageClassifier`` over a (non-shuffled) loader: ``(pooled last-stage
    features N x D, head logits N x C, dataset labels N or -1)``, all in dataset order."""
    from mmengine.utils import ProgressBar
    from mmssl_ext.evaluation.features import _labels_of, pool_feature
    was_training = model.training
    model.eval()
    n = len(loader.dataset)
    bar = ProgressBar(n) if progress else None
    feats, logits, labels = [], [], []
    try:
        for data in loader:
            data = model.data_preprocessor(data, False)
            outs = model.backbone(data['inputs'])
            if isinstance(outs, torch.Tensor):
                outs = (outs, )
            feats.append(pool_feature(outs[-1], pool).float().cpu())
            neck = model.neck(outs) if getattr(model, 'with_neck', False) else outs
            logits.append(model.head(neck).float().cpu())
            labels.append(_labels_of(data.get('data_samples'), len(feats[-1])))
            if bar is not None:
                bar.update(len(feats[-1]))
    finally:
        model.train(was_training)
    if bar is not None:
        print()
    return (torch.cat(feats).numpy(), torch.cat(logits).numpy(), torch.cat(labels).numpy())


def _entropy_stats(probs: np.ndarray) -> dict:
    p = np.asarray(probs, dtype=np.float64)
    ent = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)
    return dict(mean_max_prob=round(float(p.max(axis=1).mean()), 4),
                mean_entropy_nats=round(float(ent.mean()), 4),
                max_entropy_nats=round(float(np.log(p.shape[1])), 4))


def write_soft_targets(out_dir: str, probs: np.ndarray, rel_paths: List[str], summary: dict,
                       dtype: str = 'float32', progress: bool = True) -> dict:
    """Write ``soft_targets.npy`` (N x C), ``train_soft.txt`` (``path argmax`` per line, the
    same order) and ``soft_targets.json`` (``summary`` + statistics) into ``out_dir``."""
    from mmssl_ext.datasets.soft_label import check_soft_targets
    if dtype not in ('float32', 'float16'):
        raise ValueError(f"--dtype must be 'float32' or 'float16', got {dtype!r}")
    if len(probs) != len(rel_paths):
        raise ValueError(f'{len(probs)} soft-target rows for {len(rel_paths)} images')
    probs = np.asarray(probs).astype(dtype, copy=False)
    check_soft_targets(probs, '<soft targets being written>')
    summary = dict(summary, num_samples=len(rel_paths), num_classes=int(probs.shape[1]),
                   dtype=dtype, ann_file=SOFT_ANN_FILE, soft_targets=SOFT_TARGETS_FILE,
                   **_entropy_stats(probs),
                   files=[SOFT_TARGETS_FILE, SOFT_ANN_FILE, SOFT_SUMMARY_FILE])

    def write(tmp):
        np.save(osp.join(tmp, SOFT_TARGETS_FILE), probs)
        write_annotation(osp.join(tmp, SOFT_ANN_FILE), rel_paths,
                         np.asarray(probs, dtype=np.float32).argmax(axis=1))
        with open(osp.join(tmp, SOFT_SUMMARY_FILE), 'w') as f:
            json.dump(summary, f, indent=2)
            f.write('\n')
        return summary['files']

    _write_atomically(out_dir, write)
    summary['out_dir'] = out_dir
    if progress:
        agree = summary.get('argmax_vs_clusters', summary.get('argmax_vs_dataset_labels'))
        print(f'soft targets ({summary["mode"]}, T={summary["temperature"]}): '
              f'{summary["num_samples"]} x {summary["num_classes"]} -> '
              f'{osp.join(out_dir, SOFT_TARGETS_FILE)}\n'
              f'mean max probability {summary["mean_max_prob"]}, mean entropy '
              f'{summary["mean_entropy_nats"]} of at most {summary["max_entropy_nats"]} nats'
              + (f', argmax agreement {agree}' if agree is not None else ''))
    return summary


def soft_targets(out_dir: Optional[str] = None,
                 temperature: Optional[float] = None,
                 clusters: Optional[str] = None,
                 mode: str = 'auto',
                 config: Optional[str] = None,
                 checkpoint: Optional[str] = None,
                 torchvision: Optional[str] = None,
                 weights: Optional[str] = None,
                 layer: int = -1,
                 pool: str = 'avg',
                 data_config: Optional[str] = None,
                 data_root: Optional[str] = None,
                 ann_file: Optional[str] = None,
                 data_prefix: Optional[str] = None,
                 img_size: int = 32,
                 crop_ratio: Optional[float] = None,
                 num_samples: Optional[int] = None,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None,
                 seed: int = 0,
                 dtype: str = 'float32',
                 cfg_options: Optional[dict] = None,
                 data_cfg_options: Optional[dict] = None,
                 progress: bool = True) -> dict:
    """Soft targets of N_pre for the distillation baseline; returns the summary.

    * ``mode='logits'`` (default without ``clusters``): N_pre is an mmpretrain
      ``ImageClassifier`` (``config`` + full ``checkpoint``); targets ``softmax(logits / T)``
      (default T=4) over its classes, for the images of the data flags (as :func:`cluster`).
    * ``mode='centroids'`` (default with ``clusters``, a cluster-step folder): a self-supervised
      N_pre; targets ``softmax(cos(feature, centroid_k) / T)`` (default T=0.1) over the K
      centroids, rows in the order of ``clusters/train_clusters.txt``.  The features are
      extracted again when N_pre is given here (with the data flags: they must be the cluster
      step's; the image lists are compared and the argmax agreement with the cluster ids is
      reported), else read from the cluster step's ``features.npy`` (``--save-features``).

    ``out_dir`` (default: ``clusters``) receives ``soft_targets.npy``, ``train_soft.txt`` and
    ``soft_targets.json`` (mode, T, source, data location, statistics).
    """
    from mmengine.registry import DefaultScope
    if mode == 'auto':
        mode = 'centroids' if clusters else 'logits'
    if mode not in ('logits', 'centroids'):
        raise ValueError(f"--mode must be 'auto', 'logits' or 'centroids', got {mode!r}")
    if temperature is None:
        temperature = DEFAULT_SOFT_TEMPERATURE[mode]
    if not temperature > 0:
        raise ValueError(f'--temperature must be positive, got {temperature}')
    if out_dir is None:
        if not clusters:
            raise ValueError('soft-targets needs --out-dir (or --clusters DIR to write next to '
                             'its train_clusters.txt)')
        out_dir = clusters if osp.isdir(clusters) else osp.dirname(clusters)
    data_kw = dict(data_config=data_config, data_root=data_root, ann_file=ann_file,
                   data_prefix=data_prefix, img_size=img_size, crop_ratio=crop_ratio,
                   batch_size=batch_size, num_workers=num_workers, num_samples=num_samples,
                   data_cfg_options=data_cfg_options, seed=seed)
    scope = 'mmpretrain'
    if config is not None:
        scope = load_config(config).get('default_scope', None) or scope
    t0 = time.perf_counter()
    with DefaultScope.overwrite_default_scope(scope):
        if mode == 'logits':
            if clusters:
                raise ValueError('--clusters is for --mode centroids; logits soft targets come '
                                 'from the classifier itself')
            if config is None:
                raise ValueError('logits soft targets need N_pre as --config C --checkpoint X '
                                 '(an mmpretrain ImageClassifier); torchvision models are '
                                 'supported through --clusters (centroids mode)')
            model, source = build_classifier(config, checkpoint, cfg_options, seed)
            images = build_image_loader(config, cfg_options=cfg_options, **data_kw)
            if progress:
                print(f'logits of {len(images.dataset)} images with {config}')
            _, logits, _ = extract_logits(model, images.loader, pool, progress)
            probs = softmax_rows(logits, temperature)
            summary = dict(mode='logits', temperature=float(temperature), source=source,
                           data=images.summary())
            if (images.labels >= 0).all() and images.labels.max() < probs.shape[1]:
                summary['argmax_vs_dataset_labels'] = round(float(
                    (probs.argmax(1) == images.labels).mean()), 4)
            rel_paths = images.rel_paths
        else:
            probs, rel_paths, summary = _centroid_soft_targets(
                clusters, temperature, config, checkpoint, torchvision, weights, layer, pool,
                cfg_options, data_kw, progress)
    summary['timings'] = dict(total_s=round(time.perf_counter() - t0, 2))
    return write_soft_targets(out_dir, probs, rel_paths, summary, dtype, progress)


def _centroid_soft_targets(clusters, temperature, config, checkpoint, torchvision, weights,
                           layer, pool, cfg_options, data_kw, progress):
    from mmssl_ext.clustering import PCA
    if not clusters:
        raise ValueError('--mode centroids needs --clusters DIR (a cluster-step folder with '
                         'centroids.npy and summary.json)')
    ann, csum = read_clusters(clusters)
    cdir = osp.dirname(ann)
    if csum is None:
        raise FileNotFoundError(f'{cdir} has no {SUMMARY_FILE}: centroids mode needs the '
                                f'cluster step\'s preprocessing (L2 / PCA) recorded there')
    centroids = np.load(osp.join(cdir, CENTROIDS_FILE))
    pca = None
    if csum['kmeans'].get('pca_dim'):
        z = np.load(osp.join(cdir, PCA_FILE))
        pca = PCA(A=z['A'], b=z['b'], eigenvalues=z['eigenvalues'], whiten=bool(z['whiten']))
    rows = _read_rows(ann)
    rel_paths = [r[0] for r in rows]
    cluster_ids = np.asarray([int(r[1]) for r in rows])
    feat_file = osp.join(cdir, FEATURES_FILE)
    have_model = config is not None or torchvision is not None
    if have_model:
        images = build_image_loader(config, cfg_options=cfg_options, **data_kw)
        if images.rel_paths != rel_paths:
            diff = next((i for i, (a, b) in enumerate(zip(images.rel_paths, rel_paths))
                         if a != b), min(len(images.rel_paths), len(rel_paths)))
            raise ValueError(
                f'the images given here are not those of {ann}: {len(images.rel_paths)} vs '
                f'{len(rel_paths)} images, first difference at row {diff}; pass the data flags '
                f'of the cluster step')
        model, source, stage = build_pretrained(config, checkpoint, torchvision, weights, layer,
                                                pool, cfg_options, data_kw['seed'])
        if progress:
            print(f'extracting features of {len(rel_paths)} images')
        feats, _ = extract_features(model, images.loader, stage=stage, pool=pool,
                                    normalize=False, progress=progress)
        feats = feats.numpy()
        feature_source = 'extracted'
    elif osp.isfile(feat_file):
        feats = np.load(feat_file)
        source = csum.get('source')
        feature_source = feat_file
        if len(feats) != len(rel_paths):
            raise ValueError(f'{feat_file} has {len(feats)} rows but {ann} lists '
                             f'{len(rel_paths)} images')
    else:
        raise ValueError(f'centroids mode needs the features of the clustered images: '
                         f'{feat_file} does not exist (cluster with --save-features), so give '
                         f'the cluster step\'s N_pre (--config C --checkpoint X or --torchvision '
                         f'NAME --weights W) and data flags again')
    if feats.shape[1] != csum['feature_dim']:
        raise ValueError(f'features have {feats.shape[1]} dims, the cluster step clustered '
                         f'{csum["feature_dim"]}-dim features ({cdir}/{SUMMARY_FILE}): not the '
                         f'same N_pre / --layer')
    probs = soft_assignments(feats, centroids, temperature,
                             csum['kmeans'].get('l2_normalize', True), pca)
    agree = float((probs.argmax(1) == cluster_ids).mean())
    if agree < 0.9:
        from mmengine.logging import print_log
        print_log(f'soft targets: the argmax agrees with only {agree:.1%} of the cluster ids of '
                  f'{ann}; were the features made by the same N_pre, layer and pipeline?',
                  logger='current', level=30)
    summary = dict(mode='centroids', temperature=float(temperature), source=source,
                   data=csum['data'], clusters=osp.abspath(cdir), k=int(csum['k']),
                   features=feature_source, argmax_vs_clusters=round(agree, 4))
    return probs, rel_paths, summary


# ------------------------------------------------------------------------------ distill
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


def distill_overrides(soft: str, cfg: Config) -> dict:
    """``--cfg-options`` that point a distillation config at a soft-target step's output:
    annotation + soft-target files, image folder, number of classes and the loss temperature."""
    ann, npy, summary = read_soft_targets(soft)
    ds_type = cfg.train_dataloader.dataset.get('type')
    if ds_type != 'SoftLabelDataset':
        raise ValueError(f'the distillation config trains on {ds_type}; it needs '
                         f"train_dataloader.dataset.type='SoftLabelDataset' to serve the soft "
                         f'targets (see configs/clusterfit/clusterfit-distill_*.py)')
    rows = _read_rows(ann)
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


def distill(config: str, soft: str, work_dir: Optional[str] = None,
            cfg_options: Optional[dict] = None, train_args: Optional[List[str]] = None) -> dict:
    """Train a distillation config (``SoftLabelDataset`` + ``DistillationKLLoss``) from scratch
    on the soft targets in ``soft``; the loss temperature is the one they were made with."""
    probe = load_config(config)
    if cfg_options:
        probe.merge_from_dict(cfg_options)
    opts = distill_overrides(soft, probe)
    t_soft = opts.get('model.head.loss.temperature')
    t_user = (cfg_options or {}).get('model.head.loss.temperature')
    if t_soft is not None and t_user is not None and float(t_user) != t_soft:
        from mmengine.logging import print_log
        print_log(f'distill: loss temperature {t_user} (--cfg-options) differs from the T={t_soft} '
                  f'the soft targets were made with', logger='current', level=30)
    out = train_with_overrides(config, opts, work_dir, cfg_options, train_args)
    cfg = out.pop('cfg')
    return dict(out, num_classes=cfg.model.head.num_classes,
                temperature=cfg.model.head.loss.get('temperature'),
                ann_file=cfg.train_dataloader.dataset.ann_file,
                soft_targets=cfg.train_dataloader.dataset.soft_targets)


# ------------------------------------------------------------------------------ run (chain)
def run(config: str, work_dir: Optional[str] = None, cluster_kwargs: Optional[dict] = None,
        cfg_options: Optional[dict] = None, train_args: Optional[List[str]] = None,
        progress: bool = True) -> dict:
    """cluster -> fit -> extract backbone.  ``config`` is the fit config; its ``knn_eval``
    train split is the default image set of the cluster step."""
    from mmssl_ext.apis.extract_backbone import extract_backbone
    kw = dict(cluster_kwargs or {})
    if work_dir is None:
        work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    if kw.get('data_root') is None and kw.get('data_config') is None:
        kw['data_config'] = config
        kw.setdefault('data_cfg_options', cfg_options)
    summary = cluster(work_dir, progress=progress, **kw)
    fitted = fit(config, work_dir, work_dir=work_dir, cfg_options=cfg_options,
                 train_args=train_args)
    if fitted['checkpoint'] is None:
        raise RuntimeError(f'the fit step wrote no checkpoint into {work_dir} (is the '
                           f'CheckpointHook interval larger than the schedule?)')
    backbone = osp.join(work_dir, BACKBONE_FILE)
    info = extract_backbone(fitted['checkpoint'], backbone)
    out = dict(work_dir=work_dir, ann_file=osp.join(work_dir, ANN_FILE),
               summary=osp.join(work_dir, SUMMARY_FILE),
               centroids=osp.join(work_dir, CENTROIDS_FILE),
               checkpoint=fitted['checkpoint'], backbone=backbone,
               k=summary['k'], num_samples=summary['num_samples'],
               backbone_tensors=info['num_tensors'])
    print('ClusterFit artefacts:')
    for key in ('ann_file', 'centroids', 'summary', 'checkpoint', 'backbone'):
        print(f'  {key:<11} {out[key]}')
    print(f'evaluate: python tools/knn_eval.py {config} {backbone} --baseline')
    return out


# ------------------------------------------------------------------------------ CLI
def _add_pretrained_args(p: argparse.ArgumentParser, config_flag: str = '--config',
                         kmeans: bool = True) -> None:
    g = p.add_argument_group('pretrained network N_pre (config + checkpoint, or torchvision)')
    g.add_argument(config_flag, dest='pre_config',
                   help='mmssl_ext / mmpretrain config (pkg:: paths allowed) of N_pre')
    g.add_argument('--checkpoint', help="full or backbone-only checkpoint of N_pre, or 'random'")
    g.add_argument('--torchvision', metavar='NAME', help='torchvision model name, e.g. resnet18')
    g.add_argument('--weights', help="local state-dict file for --torchvision, or 'random'")
    g.add_argument('--layer', type=int, default=-1,
                   help='ResNet stage index 0-3 to take features from (default -1: last)')
    g.add_argument('--pool', choices=['avg', 'max'], default='avg', help='global pooling')
    d = p.add_argument_group(f'images to {"cluster" if kmeans else "score"} (default: '
                             f'knn_eval.train_dataloader of the config)')
    d.add_argument('--data-config', help='config whose knn_eval.train_dataloader lists them')
    d.add_argument('--data-root', help='image folder root (CustomDataset data_root)')
    d.add_argument('--ann-file', help='annotation/list file, relative to --data-root')
    d.add_argument('--data-prefix', help='image sub-folder, e.g. train')
    d.add_argument('--img-size', type=int, default=32, help='input size with --data-root')
    d.add_argument('--crop-ratio', type=float,
                   help='with --data-root: resize the short side to size/ratio and centre-crop '
                   '(ImageNet: --img-size 224 --crop-ratio 0.875)')
    d.add_argument('--num-samples', type=int, help='only the first N images of the list')
    d.add_argument('--batch-size', type=int, help='extraction batch size')
    d.add_argument('--num-workers', type=int, help='dataloader workers')
    if not kmeans:
        return
    c = p.add_argument_group('k-means')
    c.add_argument('--k', type=int, required=True, help='number of clusters')
    c.add_argument('--niter', type=int, default=20, help='k-means iterations (default 20)')
    c.add_argument('--seed', type=int, default=0)
    c.add_argument('--pca-dim', type=int, help='PCA to this many dimensions first')
    c.add_argument('--whiten', action='store_true', help='PCA whitening')
    c.add_argument('--no-l2-normalize', action='store_true',
                   help='cluster the raw pooled features')
    c.add_argument('--save-features', action='store_true', help='also write features.npy')


def _cluster_kwargs(args) -> dict:
    return dict(k=args.k, config=args.pre_config, checkpoint=args.checkpoint,
                torchvision=args.torchvision, weights=args.weights, layer=args.layer,
                pool=args.pool, data_config=args.data_config, data_root=args.data_root,
                ann_file=args.ann_file, data_prefix=args.data_prefix, img_size=args.img_size,
                crop_ratio=args.crop_ratio, num_samples=args.num_samples,
                batch_size=args.batch_size, num_workers=args.num_workers, niter=args.niter,
                seed=args.seed, pca_dim=args.pca_dim, whiten=args.whiten,
                l2_normalize=not args.no_l2_normalize, save_features=args.save_features)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='ClusterFit: cluster features of a pretrained '
                                'network, train a new network on the cluster ids')
    sub = p.add_subparsers(dest='command', required=True)

    pc = sub.add_parser('cluster', help='features -> k-means -> pseudo-label annotation file')
    _add_pretrained_args(pc)
    pc.add_argument('--out-dir', required=True, help='folder for train_clusters.txt etc.')
    pc.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the N_pre config (also of its knn_eval data)')
    pc.add_argument('--data-cfg-options', nargs='+', action=DictAction,
                    help='overrides of --data-config')

    pf = sub.add_parser('fit', help='train a fit config on the pseudo labels (tools/train.py)')
    pf.add_argument('config', help='fit config (an mmpretrain ImageClassifier)')
    pf.add_argument('--clusters', required=True,
                    help='output folder of the cluster step (or its train_clusters.txt)')
    pf.add_argument('--work-dir', help='default: work_dirs/<config name>')
    pf.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the fit config')

    pr = sub.add_parser('run', help='cluster -> fit -> extract backbone in one go')
    pr.add_argument('config', help='fit config; its knn_eval train split is clustered')
    _add_pretrained_args(pr, '--pretrained-config')
    pr.add_argument('--work-dir', help='default: work_dirs/<fit config name>')
    pr.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the fit config (also of its knn_eval data)')
    pr.add_argument('--pretrained-cfg-options', nargs='+', action=DictAction,
                    help='overrides of the N_pre config')

    ps = sub.add_parser(
        'soft-targets', help="N_pre's soft predictions for the distillation baseline: "
        'softmax(logits/T) of a classifier, or softmax(cos(feature, centroids)/T) with --clusters')
    _add_pretrained_args(ps, kmeans=False)
    s = ps.add_argument_group('soft targets')
    s.add_argument('--clusters', help='cluster-step folder: soft assignment to its centroids '
                   '(self-supervised N_pre; default --out-dir)')
    s.add_argument('--mode', choices=['auto', 'logits', 'centroids'], default='auto',
                   help='auto: centroids with --clusters, else logits')
    s.add_argument('--temperature', type=float,
                   help=f'softmax temperature T (default {DEFAULT_SOFT_TEMPERATURE["logits"]} '
                   f'for logits, {DEFAULT_SOFT_TEMPERATURE["centroids"]} for centroids)')
    s.add_argument('--dtype', choices=['float32', 'float16'], default='float32',
                   help='storage type of soft_targets.npy')
    s.add_argument('--seed', type=int, default=0)
    ps.add_argument('--out-dir', help='folder for soft_targets.npy, train_soft.txt, '
                    'soft_targets.json (default: --clusters)')
    ps.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the N_pre config (also of its knn_eval data)')
    ps.add_argument('--data-cfg-options', nargs='+', action=DictAction,
                    help='overrides of --data-config')

    pd = sub.add_parser('distill', help='train a distillation config on the soft targets '
                        '(tools/train.py; SoftLabelDataset + DistillationKLLoss)')
    pd.add_argument('config', help='distillation config, e.g. configs/clusterfit/'
                    'clusterfit-distill_r18-w32_1xb64-3000it_fmnist.py')
    pd.add_argument('--soft-targets', required=True, help='output folder of soft-targets')
    pd.add_argument('--work-dir', help='default: work_dirs/<config name>')
    pd.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='overrides of the distillation config')

    from mmssl_ext.apis import clusterfit_control
    pn = sub.add_parser('noise-control', help="the label-noise control experiment (paper's "
                        'Fig. 6) in miniature: N_pre vs distillation vs ClusterFit',
                        description=clusterfit_control.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    clusterfit_control.add_arguments(pn)

    args, rest = p.parse_known_args(argv)
    if rest and args.command in ('cluster', 'soft-targets', 'noise-control'):
        p.error(f'unrecognized arguments: {" ".join(rest)}')
    args.train_args = rest  # fit / run / distill pass the rest to tools/train.py (--resume, ...)
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.command == 'cluster':
        kw = _cluster_kwargs(args)
        return cluster(args.out_dir, cfg_options=args.cfg_options,
                       data_cfg_options=args.data_cfg_options, **kw)
    if args.command == 'fit':
        out = fit(args.config, args.clusters, args.work_dir, args.cfg_options, args.train_args)
        print(f'fit step done: checkpoint {out["checkpoint"]}\n'
              f'backbone: python tools/extract_backbone.py {out["checkpoint"]} '
              f'{osp.join(out["work_dir"], BACKBONE_FILE)}')
        return out
    if args.command == 'soft-targets':
        return soft_targets(
            args.out_dir, args.temperature, args.clusters, args.mode, config=args.pre_config,
            checkpoint=args.checkpoint, torchvision=args.torchvision, weights=args.weights,
            layer=args.layer, pool=args.pool, data_config=args.data_config,
            data_root=args.data_root, ann_file=args.ann_file, data_prefix=args.data_prefix,
            img_size=args.img_size, crop_ratio=args.crop_ratio, num_samples=args.num_samples,
            batch_size=args.batch_size, num_workers=args.num_workers, seed=args.seed,
            dtype=args.dtype, cfg_options=args.cfg_options,
            data_cfg_options=args.data_cfg_options)
    if args.command == 'distill':
        out = distill(args.config, args.soft_targets, args.work_dir, args.cfg_options,
                      args.train_args)
        print(f'distillation done (T={out["temperature"]}): checkpoint {out["checkpoint"]}\n'
              f'backbone: python tools/extract_backbone.py {out["checkpoint"]} '
              f'{osp.join(out["work_dir"], BACKBONE_FILE)}')
        return out
    if args.command == 'noise-control':
        from mmssl_ext.apis import clusterfit_control
        return clusterfit_control.run_from_args(args)
    kw = _cluster_kwargs(args)
    kw['cfg_options'] = args.pretrained_cfg_options
    return run(args.config, args.work_dir, kw, args.cfg_options, args.train_args)
