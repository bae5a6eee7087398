"""The old ``mmssl_ext.apis.clusterfit`` / ``clusterfit_control`` modules keep their public names
and keyword arguments for one release, and warn."""
import importlib
import json
import os.path as osp
import sys
import warnings

import numpy as np
from mmengine.registry import DefaultScope

from mmssl_ext import clusterfit as cf
from tests.helpers import NUM_TINY_CLASSES

OLD_NAMES = (
    'ANN_FILE', 'SUMMARY_FILE', 'CENTROIDS_FILE', 'FEATURES_FILE', 'PCA_FILE', 'BACKBONE_FILE',
    'SOFT_TARGETS_FILE', 'SOFT_ANN_FILE', 'SOFT_SUMMARY_FILE', 'DEFAULT_SOFT_TEMPERATURE',
    'TORCHVISION_MEAN', 'TORCHVISION_STD', 'TorchvisionBackbone', 'TorchvisionFeatureModel',
    'load_torchvision_weights', 'build_torchvision_model', 'build_config_model',
    'cluster_loader_cfg', 'image_list', 'nmi', 'write_annotation', 'cluster', 'cluster_step',
    'ImageList', 'build_image_loader', 'build_pretrained', 'cluster_features', 'format_summary',
    'read_clusters', 'fit_overrides', 'train_with_overrides', 'fit', 'softmax_rows',
    'soft_assignments', 'build_classifier', 'extract_logits', 'write_soft_targets',
    'soft_targets', 'read_soft_targets', 'distill_overrides', 'distill', 'run', 'parse_args',
    'main')
OLD_CONTROL_NAMES = ('DEFAULT_CONFIG', 'NoiseControl', 'inject_label_noise', 'noise_report',
                     'read_list', 'select', 'write_list', 'level_name', 'linear_probe',
                     'format_markdown', 'plot_results', 'add_arguments', 'run_from_args', 'main')


def _import_fresh(name):
    sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        module = importlib.import_module(name)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    return module


def test_old_names_are_there_and_warn():
    old = _import_fresh('mmssl_ext.apis.clusterfit')
    assert [n for n in OLD_NAMES if not hasattr(old, n)] == []
    assert old.ANN_FILE == cf.ANN_FILE and old.fit_overrides is cf.fit_overrides
    control = _import_fresh('mmssl_ext.apis.clusterfit_control')
    assert [n for n in OLD_CONTROL_NAMES if not hasattr(control, n)] == []


def test_old_keyword_arguments_still_cluster(tiny_tree, tmp_path):
    old = _import_fresh('mmssl_ext.apis.clusterfit')
    out = str(tmp_path / 'c')
    summary = old.cluster(out, 2, torchvision='resnet18', weights='random', data_root=tiny_tree,
                          ann_file='meta/train.txt', data_prefix='train', num_workers=0,
                          niter=5, progress=False)
    assert summary['k'] == 2 and summary['num_samples'] == 8 * NUM_TINY_CLASSES
    assert json.load(open(osp.join(out, cf.SUMMARY_FILE)))['kmeans']['niter'] == 5
    feats = np.random.RandomState(0).randn(summary['num_samples'], 8).astype(np.float32)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        images = old.build_image_loader(data_root=tiny_tree, ann_file='meta/train.txt',
                                        data_prefix='train', num_workers=0)
    again = old.cluster_features(str(tmp_path / 'f'), feats, 3, images, dict(kind='test'),
                                 niter=4, progress=False)
    assert again['k'] == 3 and again['kmeans']['niter'] == 4
