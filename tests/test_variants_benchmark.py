"""benchmarks/variants.py: each variant changes exactly the part of our config it names, and the
lightly views come out as what our PackInputs / data preprocessor take."""
import os.path as osp

import numpy as np
import pytest

from benchmarks import quality, variants
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

BYOL = osp.join(REPO, quality.METHODS['byol'])


def _views(cfg):
    pipe = cfg.train_dataloader.dataset.pipeline
    return [t for t in pipe if t['type'] == 'MultiView'][0]['transforms']


def test_bilinear_changes_only_the_crops_interpolation():
    cfg, ref = load_config(BYOL), load_config(BYOL)
    assert any(t.get('interpolation') != 'bilinear'
               for v in _views(ref) for t in v if t['type'] == 'RandomResizedCrop')
    msg = variants.apply_variant(cfg, 'byol', 'bilinear')
    assert msg == '2 RandomResizedCrop -> bilinear'
    for got, want in zip(_views(cfg), _views(ref)):
        for a, b in zip(got, want):
            if a['type'] == 'RandomResizedCrop':
                assert a['interpolation'] == 'bilinear'
                a = {k: v for k, v in a.items() if k != 'interpolation'}
                b = {k: v for k, v in b.items() if k != 'interpolation'}
            assert a == b
    assert cfg.model == ref.model


def test_last_bias_builds_a_biased_last_layer():
    from mmengine.registry import DefaultScope
    from mmssl_ext.registry import MODELS
    cfg = load_config(BYOL)
    variants.apply_variant(cfg, 'byol', 'last-bias')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = MODELS.build(cfg.model.neck)
        ref = MODELS.build(load_config(BYOL).model.neck)
    last = [m for m in neck.modules() if m.__class__.__name__ == 'Linear'][-1]
    ref_last = [m for m in ref.modules() if m.__class__.__name__ == 'Linear'][-1]
    assert last.bias is not None and ref_last.bias is None
    assert cfg.model.head.predictor.with_last_bias is True


def test_bad_variants_name_the_problem():
    cfg = load_config(BYOL)
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        variants.apply_variant(cfg, 'byol', 'nope')
    cfg.optim_wrapper.optimizer.type = 'SGD'
    pytest.importorskip('lightly')
    with pytest.raises(ValueError, match='the optimizer is SGD, not LARS'):
        variants.apply_variant(cfg, 'byol', 'lightly-lars')


def test_lightly_views_feed_our_preprocessor():
    pytest.importorskip('lightly')
    from mmpretrain.registry import TRANSFORMS
    cfg = load_config(BYOL)
    variants.apply_variant(cfg, 'byol', 'lightly-views')
    pipe = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipe] == ['LoadImageFromFile', 'LightlyViews', 'PackInputs']
    yy, xx = np.mgrid[0:28, 0:28]
    # a 2 px checkerboard: every crop the views can take holds both levels
    img = np.repeat((((yy // 2 + xx // 2) % 2) * 200).astype(np.uint8)[..., None], 3, axis=2)
    out = TRANSFORMS.build(dict(type='LightlyViews'))(dict(img=img))['img']
    assert len(out) == 2
    for v in out:
        assert v.shape == (32, 32, 3) and v.dtype == np.float32
        assert 0.0 <= v.min() and v.max() <= 255.0 + 1e-3  # 0-255, not normalised
        assert v.max() - v.min() > 20
