"""Deprecated: ClusterFit moved to the package :mod:`mmssl_ext.clusterfit` (the steps take option
objects: :class:`~mmssl_ext.clusterfit.NPreSpec`, :class:`~mmssl_ext.clusterfit.ImageSource`,
:class:`~mmssl_ext.clusterfit.KMeansOptions`, ...) and its command line to
:mod:`mmssl_ext.cli.clusterfit`.  This module keeps the old names, with their old keyword
arguments, for one release."""
import warnings
from typing import List, Optional

from mmssl_ext.cli.clusterfit import main, parse_args, print_artefacts, train_options
from mmssl_ext.clustering import nmi
from mmssl_ext.clusterfit import cluster_step as _cluster
from mmssl_ext.clusterfit import fit_step as _fit
from mmssl_ext.clusterfit import images as _images
from mmssl_ext.clusterfit import networks as _networks
from mmssl_ext.clusterfit import soft_target_step as _soft
from mmssl_ext.clusterfit.cluster_step import format_summary
from mmssl_ext.clusterfit.fit_step import distill_overrides, fit_overrides
from mmssl_ext.clusterfit.formats import (ANN_FILE, BACKBONE_FILE, CENTROIDS_FILE,
                                          FEATURES_FILE, PCA_FILE, SOFT_ANN_FILE,
                                          SOFT_SUMMARY_FILE, SOFT_TARGETS_FILE, SUMMARY_FILE,
                                          read_clusters, read_soft_targets, write_annotation)
from mmssl_ext.clusterfit.images import ImageList, image_list
from mmssl_ext.clusterfit.networks import (TORCHVISION_MEAN, TORCHVISION_STD,
                                           TorchvisionBackbone, TorchvisionFeatureModel,
                                           build_classifier, build_torchvision_model,
                                           load_torchvision_weights)
from mmssl_ext.clusterfit.options import (DEFAULT_SOFT_TEMPERATURE, ImageSource,
                                          KMeansOptions, NPreSpec, SoftTargetOptions)
from mmssl_ext.clusterfit.soft_target_step import (extract_logits, soft_assignments,
                                                   softmax_rows, write_soft_targets)

warnings.warn('mmssl_ext.apis.clusterfit moved to mmssl_ext.clusterfit (library) and '
              'mmssl_ext.cli.clusterfit (command line); the old name goes in the next release',
              DeprecationWarning, stacklevel=2)

__all__ = [
    'ANN_FILE', 'BACKBONE_FILE', 'CENTROIDS_FILE', 'DEFAULT_SOFT_TEMPERATURE', 'FEATURES_FILE',
    'ImageList', 'PCA_FILE', 'SOFT_ANN_FILE', 'SOFT_SUMMARY_FILE', 'SOFT_TARGETS_FILE',
    'SUMMARY_FILE', 'TORCHVISION_MEAN', 'TORCHVISION_STD', 'TorchvisionBackbone',
    'TorchvisionFeatureModel', 'build_classifier', 'build_config_model', 'build_image_loader',
    'build_pretrained', 'build_torchvision_model', 'cluster', 'cluster_features',
    'cluster_loader_cfg', 'cluster_step', 'distill', 'distill_overrides', 'extract_logits',
    'fit', 'fit_overrides', 'format_summary', 'image_list', 'load_torchvision_weights', 'main',
    'nmi', 'parse_args', 'read_clusters', 'read_soft_targets', 'run', 'soft_assignments',
    'soft_targets', 'softmax_rows', 'train_with_overrides', 'write_annotation',
    'write_soft_targets'
]


def _no_more(kwargs: dict, name: str) -> None:
    if kwargs:
        raise TypeError(f'{name}() got unexpected keyword arguments {sorted(kwargs)}')


def _cluster_options(k, config, kwargs: dict, name: str):
    kw = dict(kwargs, k=k, config=config)
    progress = kw.pop('progress', True)
    npre, images, kmeans = (NPreSpec.from_kwargs(kw), ImageSource.from_kwargs(kw),
                            KMeansOptions.from_kwargs(kw))
    _no_more(kw, name)
    return npre, images, kmeans, progress


def cluster(out_dir: str, k: int, config: Optional[str] = None, **kwargs) -> dict:
    npre, images, kmeans, progress = _cluster_options(k, config, kwargs, 'cluster')
    return _cluster.cluster(out_dir, npre, images, kmeans, progress)


def cluster_step(out_dir: str, k: int, config: Optional[str] = None, **kwargs) -> dict:
    npre, images, kmeans, progress = _cluster_options(k, config, kwargs, 'cluster_step')
    return _cluster.cluster(out_dir, npre, images, kmeans, progress)


def cluster_features(out_dir, feats, k, images, source, niter=20, seed=0, pca_dim=None,
                     whiten=False, l2_normalize=True, save_features=False, timings=None,
                     t_start=None, progress=True):
    kmeans = KMeansOptions(k=k, niter=niter, seed=seed, pca_dim=pca_dim, whiten=whiten,
                           l2_normalize=l2_normalize, save_features=save_features)
    return _cluster.cluster_features(out_dir, feats, kmeans, images, source, timings, t_start,
                                     progress)


def cluster_loader_cfg(data_cfg=None, data_cfg_name: str = '', **kwargs) -> dict:
    return _images.cluster_loader_cfg(ImageSource(**kwargs), data_cfg, data_cfg_name)


def build_image_loader(config: Optional[str] = None, cfg_options: Optional[dict] = None,
                       seed: int = 0, **kwargs) -> ImageList:
    source = ImageSource(**kwargs).or_config(config, cfg_options)
    return _images.build_image_loader(source, seed)


def build_pretrained(config, checkpoint, torchvision, weights, layer=-1, pool='avg',
                     cfg_options=None, seed=0):
    npre = NPreSpec(config=config, checkpoint=checkpoint, torchvision=torchvision,
                    weights=weights, layer=layer, pool=pool, cfg_options=cfg_options)
    return _networks.build_pretrained(npre, seed)


def build_config_model(config, checkpoint, layer=-1, cfg_options=None, seed=0):
    npre = NPreSpec(config=config, checkpoint=checkpoint, layer=layer, cfg_options=cfg_options)
    return _networks.build_config_model(npre, seed)


def soft_targets(out_dir=None, temperature=None, clusters=None, mode='auto', **kwargs) -> dict:
    kw = dict(kwargs, temperature=temperature, clusters=clusters, mode=mode)
    progress = kw.pop('progress', True)
    options, npre, images = (SoftTargetOptions.from_kwargs(kw), NPreSpec.from_kwargs(kw),
                             ImageSource.from_kwargs(kw))
    _no_more(kw, 'soft_targets')
    return _soft.soft_targets(out_dir, npre, images, options, progress)


def train_with_overrides(config: str, opts: dict, work_dir: Optional[str] = None,
                         cfg_options: Optional[dict] = None,
                         train_args: Optional[List[str]] = None) -> dict:
    options = train_options(config, work_dir, cfg_options, train_args)
    return _fit.train_config(_fit.prepare_config(config, opts, options))


def fit(config, clusters, work_dir=None, cfg_options=None, train_args=None) -> dict:
    return _fit.fit(config, clusters, train_options(config, work_dir, cfg_options, train_args))


def distill(config, soft, work_dir=None, cfg_options=None, train_args=None) -> dict:
    return _fit.distill(config, soft, train_options(config, work_dir, cfg_options, train_args))


def run(config, work_dir=None, cluster_kwargs=None, cfg_options=None, train_args=None,
        progress=True) -> dict:
    kw = dict(cluster_kwargs or {})
    npre, images = NPreSpec.from_kwargs(kw), ImageSource.from_kwargs(kw)
    kmeans = KMeansOptions.from_kwargs(kw)
    _no_more(kw, 'run')
    out = _fit.run(config, npre, kmeans, images,
                   train_options(config, work_dir, cfg_options, train_args), progress)
    print_artefacts(config, out)
    return out
