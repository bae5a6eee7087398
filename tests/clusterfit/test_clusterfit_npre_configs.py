"""The Fashion-MNIST N_pre recipes of ClusterFit: supervised and rotation prediction."""
import numpy as np
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS

import mmssl_ext  # noqa: F401
from mmssl_ext.utils.config import load_config
from tests.helpers import NUM_TINY_CLASSES, REPO

ROT_CFG = f'{REPO}/configs/clusterfit/rotation_r18-w32_1xb64-3000it_fmnist.py'
SUP_CFG = f'{REPO}/configs/clusterfit/supervised_r18-w32_1xb64-3000it_fmnist.py'


def _dataset(cfg_path, tree, pipeline=None):
    cfg = load_config(cfg_path)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(data_root=tree)
    if pipeline is not None:
        ds_cfg.pipeline = pipeline
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return cfg, DATASETS.build(ds_cfg)


def test_rotation_npre_targets_are_the_applied_rotation(tiny_tree):
    cfg, ds = _dataset(ROT_CFG, tiny_tree)
    assert cfg.model.head.num_classes == 4
    # without the random crop / flip, the packed image must be the original rotated by the label
    plain_cfg, plain = _dataset(ROT_CFG, tiny_tree, pipeline=[
        dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    exact_cfg, exact = _dataset(ROT_CFG, tiny_tree, pipeline=[
        dict(type='LoadImageFromFile'), cfg.train_pipeline[3], dict(type='PackInputs')])
    seen = set()
    np.random.seed(0)
    for i in range(len(exact)):
        out = exact[i]
        label = int(out['data_samples'].gt_label)
        seen.add(label)
        orig = plain[i]['inputs']  # C x H x W
        expect = torch.rot90(orig, k=label, dims=(1, 2))  # counter-clockwise, like np.rot90
        assert torch.equal(out['inputs'], expect)
    assert seen == {0, 1, 2, 3}
    # the full pipeline packs a 4-way target for every image, never the class label
    labels = {int(ds[i]['data_samples'].gt_label) for i in range(len(ds))}
    assert labels <= {0, 1, 2, 3}


def test_supervised_npre_uses_the_true_labels(tiny_tree):
    cfg, ds = _dataset(SUP_CFG, tiny_tree)
    assert cfg.model.head.num_classes == 10
    labels = [int(ds[i]['data_samples'].gt_label) for i in range(len(ds))]
    assert sorted(set(labels)) == list(range(NUM_TINY_CLASSES))
    assert labels == [int(line.split()[1]) for line in open(f'{tiny_tree}/meta/train.txt')]
