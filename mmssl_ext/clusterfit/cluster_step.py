"""The cluster step: pooled features of N_pre over the images, faiss k-means, and the pseudo
labels as an mmpretrain annotation file (plus centroids and a summary)."""
import os.path as osp
import time
from contextlib import contextmanager
from typing import Optional, Union

import numpy as np

from mmssl_ext.clustering import KMeansResult, kmeans, nmi
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.utils.config import load_config
from . import formats as F
from .images import ImageList, build_image_loader
from .networks import build_pretrained
from .options import ImageSource, KMeansOptions, NPreSpec


@contextmanager
def npre_scope(config: Optional[str]):
    """The registry scope of N_pre's config (``mmpretrain`` for torchvision or no config)."""
    from mmengine.registry import DefaultScope
    scope = 'mmpretrain'
    if config is not None:
        scope = load_config(config).get('default_scope', None) or scope
    with DefaultScope.overwrite_default_scope(scope):
        yield


def cluster(out_dir: str, npre: NPreSpec, images: ImageSource, options: KMeansOptions,
            progress: bool = True) -> dict:
    """The cluster step; returns the summary (also written to ``out_dir/summary.json``).

    ``images`` defaults to the ``knn_eval`` train split of N_pre's config.  Nothing is written
    unless every step succeeds; ``summary.json`` is written last.
    """
    t_start = time.perf_counter()
    npre.validate()
    options.validate()
    images = images.or_config(npre.config, npre.cfg_options).validate()
    with npre_scope(npre.config):
        # the images, first: a bad K is reported before any model is built
        image_list = build_image_loader(images, options.seed)
        n = len(image_list.dataset)
        if options.k > n:
            raise ValueError(f'cannot make k={options.k} clusters from {n} images '
                             f'({image_list.dataset.data_prefix.get("img_path", "")}): k must '
                             f'not exceed the number of images ({n})')
        model, source, stage = build_pretrained(npre, options.seed)
        t = time.perf_counter()
        if progress:
            print(f'extracting features of {n} images with '
                  f'{source.get("name") or source["config"]}')
        feats, _ = extract_features(model, image_list.loader, stage=stage, pool=npre.pool,
                                    normalize=False, progress=progress)
        t_extract = time.perf_counter() - t
    if len(feats) != n:
        raise RuntimeError(f'extracted {len(feats)} features for {n} images')
    return cluster_features(out_dir, feats.numpy(), options, image_list, source,
                            timings=dict(extract_s=round(t_extract, 2)), t_start=t_start,
                            progress=progress)


def _dominant_cluster_warning(sizes: np.ndarray, k: int, n: int) -> Optional[str]:
    largest = int(sizes.max())
    if k <= 2 or largest <= n / 2:
        return None
    # pseudo labels the fit step can learn little from; it happens with features that hardly
    # differ between images, e.g. a random-init ResNet with zero_init_residual=True (every
    # residual branch starts at zero: mmpretrain's default, and the ClusterFit fit config's)
    return (f'the largest of the {k} clusters holds {largest} of the {n} images '
            f'({largest / n:.0%}): N_pre\'s features hardly separate the images (a random-init '
            f'ResNet with zero_init_residual=True, whose residual branches start at zero, does '
            f'this), so the fit step gets little to learn from these pseudo labels')


def cluster_features(out_dir: str, feats: np.ndarray, options: Union[KMeansOptions, int],
                     images: ImageList, source: dict, timings: Optional[dict] = None,
                     t_start: Optional[float] = None, progress: bool = True) -> dict:
    """k-means of already extracted features (row ``i`` = image ``i`` of ``images``) and the
    cluster-step files in ``out_dir``; the second half of :func:`cluster`.  ``options`` may be
    just K (the other k-means options at their defaults)."""
    t_start = time.perf_counter() if t_start is None else t_start
    if not isinstance(options, KMeansOptions):
        options = KMeansOptions(k=options)
    o = options.validate()
    k = int(o.k)
    n = len(images.rel_paths)
    if len(feats) != n:
        raise ValueError(f'{len(feats)} feature rows for {n} images')
    if progress:
        print(f'k-means: {n} x {feats.shape[1]} features -> {k} clusters '
              f'({o.niter} iterations, pca_dim={o.pca_dim})')
    res: KMeansResult = kmeans(feats, k, niter=o.niter, seed=o.seed, pca_dim=o.pca_dim,
                               whiten=o.whiten, l2_normalize=o.l2_normalize, verbose=progress)

    summary = dict(
        k=k, num_samples=n, feature_dim=int(feats.shape[1]),
        clustered_dim=int(res.centroids.shape[1]), objective=res.objective,
        empty_clusters_reseeded=res.num_reseeded, reseeded_clusters=res.reseeded,
        sizes=[int(s) for s in res.sizes], min_size=int(res.sizes.min()),
        max_size=int(res.sizes.max()),
        kmeans=dict(niter=o.niter, seed=o.seed, pca_dim=o.pca_dim, whiten=o.whiten,
                    l2_normalize=o.l2_normalize, gpu=res.gpu,
                    objective_history=res.summary()['objective_history']),
        source=source,
        data=images.summary(),
        ann_file=F.ANN_FILE,
        timings=dict(dict(extract_s=0.0), **(timings or {}),
                     kmeans_s=round(res.timings.get('total', 0.0), 2)))
    if (images.labels >= 0).all():
        summary['nmi_vs_dataset_labels'] = round(nmi(res.assignments, images.labels), 4)
    warning = _dominant_cluster_warning(res.sizes, k, n)
    if warning:
        summary['warning'] = warning
        from mmengine.logging import print_log
        print_log(f'cluster step: {warning}', logger='current', level=30)

    files = [(F.ANN_FILE, F.annotation_bytes(images.rel_paths, res.assignments)),
             (F.CENTROIDS_FILE, F.npy_bytes(res.centroids))]
    if o.save_features:
        files.append((F.FEATURES_FILE, F.npy_bytes(feats)))
    if res.pca is not None:
        files.append((F.PCA_FILE, F.npz_bytes(A=res.pca.A, b=res.pca.b,
                                              eigenvalues=res.pca.eigenvalues,
                                              whiten=res.pca.whiten)))
    summary['files'] = [name for name, _ in files] + [F.SUMMARY_FILE]
    summary['timings']['total_s'] = round(time.perf_counter() - t_start, 2)
    files.append((F.SUMMARY_FILE, F.summary_json(summary)))
    F.write_files(out_dir, files)
    summary['out_dir'] = out_dir
    if progress:
        print(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    lines = [f'clustered {s["num_samples"]} images into K={s["k"]} clusters '
             f'(sizes {s["min_size"]}..{s["max_size"]}, objective {s["objective"]:.4g}, '
             f'{s["empty_clusters_reseeded"]} empty clusters re-seeded)']
    if 'nmi_vs_dataset_labels' in s:
        lines.append(f'NMI with the dataset labels: {s["nmi_vs_dataset_labels"]:.4f}')
    lines.append(f'features {s["timings"]["extract_s"]} s, k-means {s["timings"]["kmeans_s"]} s')
    out = s.get('out_dir', '.')
    lines.append(f'pseudo labels -> {osp.join(out, F.ANN_FILE)}  (images under '
                 f'{s["data"]["img_prefix"]})')
    lines.append(f'centroids     -> {osp.join(out, F.CENTROIDS_FILE)}')
    lines.append(f'summary       -> {osp.join(out, F.SUMMARY_FILE)}')
    return '\n'.join(lines)
