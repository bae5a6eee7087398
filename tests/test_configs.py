"""Every shipped config loads, and its model and training pipeline build."""
import glob
import os.path as osp

import pytest
from mmengine.registry import DefaultScope

from mmssl_ext.registry import MODELS, TRANSFORMS
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def test_configs_found():
    names = {osp.basename(p) for p in CONFIGS}
    assert {'pirl_r50_8xb32.py', 'mocov2_r18_1xb64-1300it_fmnist.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_builds(path):
    cfg = load_config(path)
    assert 'mmssl_ext' in cfg.custom_imports['imports']
    if cfg.default_scope == 'mmdet':  # detection-transfer configs (configs/transfer/mmdet)
        assert '/transfer/mmdet/' in path
        from mmdet.registry import MODELS as models, TRANSFORMS as transforms
        dataset = cfg.train_dataloader.dataset
        pipeline = dataset.pipeline if 'pipeline' in dataset else \
            dataset.datasets[0].pipeline  # VOC07+12: a ConcatDataset
    else:
        assert cfg.default_scope == 'mmpretrain'
        models, transforms, pipeline = MODELS, TRANSFORMS, cfg.train_dataloader.dataset.pipeline
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = models.build(cfg.model)
        for step in pipeline:
            transforms.build(step)
    assert sum(p.numel() for p in model.parameters()) > 0
