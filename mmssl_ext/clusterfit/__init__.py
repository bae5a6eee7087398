"""ClusterFit (Yan et al., CVPR 2020): cluster the features of any pretrained network N_pre,
then train a new network from scratch on the cluster ids; plus the distillation baseline.

Modules: :mod:`.options` (the option objects shared by the steps), :mod:`.networks` (N_pre as a
feature model or classifier), :mod:`.images` (the images a step reads), :mod:`.formats` (the
files a step writes and reads back), :mod:`.cluster_step`, :mod:`.soft_target_step` (the
distillation targets), :mod:`.fit_step` (fit, distill, run).  The label-noise control experiment
is :mod:`.experiments.noise_control` (not part of this API).  The command line is
``tools/clusterfit.py`` (:mod:`mmssl_ext.cli.clusterfit`).

Example::

    >>> from mmssl_ext import clusterfit as cf
    >>> npre = cf.NPreSpec(torchvision='resnet18', weights='r18.pth')
    >>> cf.cluster('work_dirs/cf', npre, cf.ImageSource(data_root='data/imagenet',
    ...            ann_file='meta/train.txt', data_prefix='train'), cf.KMeansOptions(k=1000))
    >>> cf.fit('configs/clusterfit/clusterfit-fit_r50_8xb32-105e_in1k.py', 'work_dirs/cf')
"""
from .cluster_step import cluster, cluster_features, format_summary
from .fit_step import (distill, distill_overrides, fit, fit_overrides, prepare_config,
                       prepare_fit_config, run, train_config)
from .formats import (ANN_FILE, BACKBONE_FILE, CENTROIDS_FILE, FEATURES_FILE, PCA_FILE,
                      SOFT_ANN_FILE, SOFT_SUMMARY_FILE, SOFT_TARGETS_FILE, SUMMARY_FILE,
                      read_clusters, read_soft_targets, write_annotation)
from .images import ImageList, build_image_loader
from .networks import (TorchvisionBackbone, TorchvisionFeatureModel, build_classifier,
                       build_config_model, build_pretrained, build_torchvision_model)
from .options import (DEFAULT_SOFT_TEMPERATURE, ImageSource, KMeansOptions, NPreSpec,
                      SoftTargetOptions, TrainOptions)
from .soft_target_step import extract_logits, soft_assignments, soft_targets, softmax_rows

__all__ = [
    'ANN_FILE', 'BACKBONE_FILE', 'CENTROIDS_FILE', 'DEFAULT_SOFT_TEMPERATURE', 'FEATURES_FILE',
    'ImageList', 'ImageSource', 'KMeansOptions', 'NPreSpec', 'PCA_FILE', 'SOFT_ANN_FILE',
    'SOFT_SUMMARY_FILE', 'SOFT_TARGETS_FILE', 'SUMMARY_FILE', 'SoftTargetOptions',
    'TorchvisionBackbone', 'TorchvisionFeatureModel', 'TrainOptions', 'build_classifier',
    'build_config_model', 'build_image_loader', 'build_pretrained', 'build_torchvision_model',
    'cluster', 'cluster_features', 'distill', 'distill_overrides', 'extract_logits', 'fit',
    'fit_overrides', 'format_summary', 'prepare_config', 'prepare_fit_config', 'read_clusters',
    'read_soft_targets', 'run', 'soft_assignments', 'soft_targets', 'softmax_rows',
    'train_config', 'write_annotation'
]
