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
    assert cfg.default_scope == 'mmpretrain'
    assert 'mmssl_ext' in cfg.custom_imports['imports']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
        for step in cfg.train_dataloader.dataset.pipeline:
            TRANSFORMS.build(step)
    assert sum(p.numel() for p in model.parameters()) > 0
