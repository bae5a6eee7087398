"""Soft targets of N_pre for the distillation baseline: ``softmax(logits / T)`` of an
mmpretrain ``ImageClassifier``, or, for a self-supervised N_pre, the soft assignment
``softmax(cos(feature, centroid_k) / T)`` to the centroids of a cluster step."""
import os.path as osp
import time
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from mmssl_ext.datasets.subset import read_annotation
from mmssl_ext.evaluation.features import extract_features
from . import formats as F
from .cluster_step import npre_scope
from .images import ImageList, build_image_loader
from .networks import build_classifier, build_pretrained
from .options import ImageSource, NPreSpec, SoftTargetOptions


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
                   dtype=dtype, ann_file=F.SOFT_ANN_FILE, soft_targets=F.SOFT_TARGETS_FILE,
                   **_entropy_stats(probs),
                   files=[F.SOFT_TARGETS_FILE, F.SOFT_ANN_FILE, F.SOFT_SUMMARY_FILE])
    argmax = np.asarray(probs, dtype=np.float32).argmax(axis=1)
    F.write_files(out_dir, [(F.SOFT_TARGETS_FILE, F.npy_bytes(probs)),
                            (F.SOFT_ANN_FILE, F.annotation_bytes(rel_paths, argmax)),
                            (F.SOFT_SUMMARY_FILE, F.json_bytes(summary))])
    summary['out_dir'] = out_dir
    if progress:
        agree = summary.get('argmax_vs_clusters', summary.get('argmax_vs_dataset_labels'))
        print(f'soft targets ({summary["mode"]}, T={summary["temperature"]}): '
              f'{summary["num_samples"]} x {summary["num_classes"]} -> '
              f'{osp.join(out_dir, F.SOFT_TARGETS_FILE)}\n'
              f'mean max probability {summary["mean_max_prob"]}, mean entropy '
              f'{summary["mean_entropy_nats"]} of at most {summary["max_entropy_nats"]} nats'
              + (f', argmax agreement {agree}' if agree is not None else ''))
    return summary


def soft_targets(out_dir: Optional[str], npre: NPreSpec, images: ImageSource,
                 options: SoftTargetOptions, progress: bool = True) -> dict:
    """Soft targets of N_pre for the distillation baseline; returns the summary.

    * mode ``'logits'`` (default without ``options.clusters``): N_pre is an mmpretrain
      ``ImageClassifier`` (config + full checkpoint); targets ``softmax(logits / T)`` (default
      T=4) over its classes, for ``images`` (default: the knn_eval images of its config).
    * mode ``'centroids'`` (default with ``options.clusters``, a cluster-step folder): a
      self-supervised N_pre; targets ``softmax(cos(feature, centroid_k) / T)`` (default T=0.1)
      over the K centroids, rows in the order of ``clusters/train_clusters.txt``.  The features
      are extracted again when N_pre is given (``images`` must be the cluster step's: the lists
      are compared and the argmax agreement with the cluster ids is reported), else read from
      the cluster step's ``features.npy`` (``--save-features``).

    ``out_dir`` (default: ``options.clusters``) receives ``soft_targets.npy``,
    ``train_soft.txt`` and ``soft_targets.json`` (mode, T, source, data location, statistics).
    """
    mode, temperature = options.validate().resolved()
    clusters = options.clusters
    if out_dir is None:
        if not clusters:
            raise ValueError('soft-targets needs --out-dir (or --clusters DIR to write next to '
                             'its train_clusters.txt)')
        out_dir = clusters if osp.isdir(clusters) else osp.dirname(clusters)
    npre.validate(required=False)
    if mode == 'logits' and npre.config is None:
        raise ValueError('logits soft targets need N_pre as --config C --checkpoint X (an '
                         'mmpretrain ImageClassifier); torchvision models are supported '
                         'through --clusters (centroids mode)')
    images = images.or_config(npre.config, npre.cfg_options).validate()
    t0 = time.perf_counter()
    with npre_scope(npre.config):
        if mode == 'logits':
            model, source = build_classifier(npre.config, npre.checkpoint, npre.cfg_options,
                                             options.seed)
            image_list = build_image_loader(images, options.seed)
            if progress:
                print(f'logits of {len(image_list.dataset)} images with {npre.config}')
            _, logits, _ = extract_logits(model, image_list.loader, npre.pool, progress)
            probs = softmax_rows(logits, temperature)
            summary = dict(mode='logits', temperature=temperature, source=source,
                           data=image_list.summary())
            labels = image_list.labels
            if (labels >= 0).all() and labels.max() < probs.shape[1]:
                summary['argmax_vs_dataset_labels'] = round(float(
                    (probs.argmax(1) == labels).mean()), 4)
            rel_paths = image_list.rel_paths
        else:
            probs, rel_paths, summary = _centroid_soft_targets(
                clusters, temperature, npre, images, options.seed, progress)
    summary['timings'] = dict(total_s=round(time.perf_counter() - t0, 2))
    return write_soft_targets(out_dir, probs, rel_paths, summary, options.dtype, progress)


def _features_of(image_list: ImageList, npre: NPreSpec, seed: int, progress: bool):
    model, source, stage = build_pretrained(npre, seed)
    if progress:
        print(f'extracting features of {len(image_list.rel_paths)} images')
    feats, _ = extract_features(model, image_list.loader, stage=stage, pool=npre.pool,
                                normalize=False, progress=progress)
    return feats.numpy(), source


def _centroid_soft_targets(clusters: str, temperature: float, npre: NPreSpec,
                           images: ImageSource, seed: int, progress: bool):
    from mmssl_ext.clustering import PCA
    ann, csum = F.read_clusters(clusters)
    cdir = osp.dirname(ann)
    if csum is None:
        raise FileNotFoundError(f'{cdir} has no {F.SUMMARY_FILE}: centroids mode needs the '
                                f'cluster step\'s preprocessing (L2 / PCA) recorded there')
    centroids = np.load(osp.join(cdir, F.CENTROIDS_FILE))
    pca = None
    if csum['kmeans'].get('pca_dim'):
        z = np.load(osp.join(cdir, F.PCA_FILE))
        pca = PCA(A=z['A'], b=z['b'], eigenvalues=z['eigenvalues'], whiten=bool(z['whiten']))
    rows = read_annotation(ann)
    rel_paths = [p for p, _ in rows]
    cluster_ids = np.asarray([y for _, y in rows])
    feat_file = osp.join(cdir, F.FEATURES_FILE)
    if npre.given:
        image_list = build_image_loader(images, seed)
        if image_list.rel_paths != rel_paths:
            diff = next((i for i, (a, b) in enumerate(zip(image_list.rel_paths, rel_paths))
                         if a != b), min(len(image_list.rel_paths), len(rel_paths)))
            raise ValueError(
                f'the images given here are not those of {ann}: {len(image_list.rel_paths)} vs '
                f'{len(rel_paths)} images, first difference at row {diff}; pass the data flags '
                f'of the cluster step')
        feats, source = _features_of(image_list, npre, seed, progress)
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
                         f'{csum["feature_dim"]}-dim features ({cdir}/{F.SUMMARY_FILE}): not the '
                         f'same N_pre / --layer')
    probs = soft_assignments(feats, centroids, temperature,
                             csum['kmeans'].get('l2_normalize', True), pca)
    agree = float((probs.argmax(1) == cluster_ids).mean())
    if agree < 0.9:
        from mmengine.logging import print_log
        print_log(f'soft targets: the argmax agrees with only {agree:.1%} of the cluster ids of '
                  f'{ann}; were the features made by the same N_pre, layer and pipeline?',
                  logger='current', level=30)
    summary = dict(mode='centroids', temperature=temperature, source=source,
                   data=csum['data'], clusters=osp.abspath(cdir), k=int(csum['k']),
                   features=feature_source, argmax_vs_clusters=round(agree, 4))
    return probs, rel_paths, summary
