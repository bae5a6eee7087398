"""Per-layer probe: stage features against a manual forward, the pooling rule, the linear probe
against sklearn, and tools/analysis/layer_probe.py end to end on the tiny tree."""
import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import DictAction

from mmssl_ext.cli import layer_probe as layer_probe_api
from mmssl_ext.cli.analysis_common import load_analysis_config
from mmssl_ext.cli.knn_eval import build_model
from mmssl_ext.evaluation.layer_probe import (ResNetStages, check_resnet_like,
                                              extract_stage_features, linear_probe, pool_stage,
                                              pooled_size, select_stages, standardize,
                                              train_linear_classifier)
from mmssl_ext.evaluation.plots import PNG_SIGNATURE
from mmssl_ext.utils.config import build_dataloader, load_config
from tests.helpers import REPO, tiny_moco_options

PIRL_CFG = f'{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py'
#: the ResNet-18 width-32 backbone of PIRL_CFG at 32 px: (C, H, W) of every stage
EXPECTED_SHAPES = dict(stem=(32, 8, 8), res2=(32, 8, 8), res3=(64, 4, 4), res4=(128, 2, 2),
                       res5=(256, 1, 1))


def knn_options(tree):
    """--cfg-options pointing the config's knn_eval loaders at the tiny tree (no workers)."""
    return [o for o in tiny_moco_options(tree, '') if o.startswith('knn_eval.')]


def options_dict(opts):
    p = argparse.ArgumentParser()
    p.add_argument('--o', nargs='+', action=DictAction)
    return p.parse_args(['--o', *opts]).o


@pytest.fixture(scope='module')
def pirl_model():
    return build_model(load_config(PIRL_CFG)).eval()


def manual_stages(bb, x):
    """An independent forward through the backbone's modules, stage by stage."""
    stem = bb.maxpool(bb.relu(bb.norm1(bb.conv1(x))))
    res2 = bb.layer1(stem)
    res3 = bb.layer2(res2)
    res4 = bb.layer3(res3)
    res5 = bb.layer4(res4)
    return dict(stem=stem, res2=res2, res3=res3, res4=res4, res5=res5)


@torch.no_grad()
def test_stages_match_manual_forward(pirl_model):
    bb = pirl_model.backbone
    x = torch.randn(2, 3, 32, 32)
    before = bb.out_indices
    maps = ResNetStages(bb)(x)
    assert bb.out_indices == before  # restored after the call
    ref = manual_stages(bb, x)
    assert select_stages(bb) == list(EXPECTED_SHAPES)
    for name, fmap in zip(EXPECTED_SHAPES, maps):
        assert tuple(fmap.shape) == (2, *EXPECTED_SHAPES[name]), name
        torch.testing.assert_close(fmap, ref[name])


@torch.no_grad()
def test_extracted_features_are_the_pooled_stages(tiny_tree, pirl_model):
    cfg, _ = load_analysis_config(PIRL_CFG, options_dict(knn_options(tiny_tree)))
    loader = build_dataloader(cfg.knn_eval.val_dataloader, seed=0)
    feats, labels, layout = extract_stage_features(pirl_model, loader, progress=False)
    assert list(feats) == list(EXPECTED_SHAPES)
    for name, (c, h, w) in EXPECTED_SHAPES.items():
        # 4096 // C = 128, 64, 32, 16 -> s = 8 (capped at H), 8, 4, 2, 1: no stage is pooled here
        assert layout[name] == dict(channels=c, height=h, width=w, size=h, dim=c * h * w)
        assert feats[name].shape == (12, c * h * w)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # first batch by hand: preprocess (BGR->RGB, mean/std), manual forward, flatten
    batch = next(iter(loader))
    x = batch['inputs'][:, [2, 1, 0]].float()
    mean = torch.tensor(cfg.model.data_preprocessor.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.model.data_preprocessor.std).view(1, 3, 1, 1)
    ref = manual_stages(pirl_model.backbone, (x - mean) / std)
    for name in EXPECTED_SHAPES:
        torch.testing.assert_close(feats[name][:len(x)], ref[name].flatten(1),
                                   rtol=1e-4, atol=1e-5)
    # a smaller budget pools: stem 32 x 8 x 8 -> 32 x 2 x 2 under max_dim=200
    feats, _, layout = extract_stage_features(pirl_model, loader, ['stem', 'res5'], max_dim=200,
                                              progress=False)
    assert list(feats) == ['stem', 'res5']
    assert layout['stem']['size'] == 2 and feats['stem'].shape == (12, 128)
    assert feats['res5'].shape == (12, 256)  # C > max_dim: s = 1, dim = C


def test_pooled_size_rule():
    # ResNet-50 at 224 px: stem 64x56x56, res2 256x56x56, res3 512x28x28, res4 1024x14x14,
    # res5 2048x7x7
    assert [pooled_size(c, h, h) for c, h in
            [(64, 56), (256, 56), (512, 28), (1024, 14), (2048, 7)]] == [8, 4, 2, 2, 1]
    assert pooled_size(32, 8, 8) == 8  # capped at the map size
    assert pooled_size(16, 3, 10) == 3  # non-square: capped at min(H, W)
    assert pooled_size(8192, 7, 7) == 1  # C alone exceeds the budget
    rng = np.random.RandomState(0)
    for _ in range(500):
        c, h, w = rng.randint(1, 600), rng.randint(1, 60), rng.randint(1, 60)
        max_dim = int(rng.randint(1, 20000))
        s = pooled_size(c, h, w, max_dim)
        assert 1 <= s <= min(h, w)
        assert c * s * s <= max_dim or s == 1
        assert s == min(h, w) or c * (s + 1) ** 2 > max_dim  # the largest such s
    x = torch.randn(2, 256, 56, 56)
    out = pool_stage(x)
    assert out.shape == (2, 256 * 4 * 4)
    torch.testing.assert_close(out, F.adaptive_avg_pool2d(x, 4).flatten(1))


def test_non_resnet_backbone_is_named():
    from mmpretrain.models.backbones import MobileNetV2
    with pytest.raises(TypeError, match='ResNet-family backbone.*got MobileNetV2'):
        check_resnet_like(MobileNetV2(widen_factor=0.25))


def test_unknown_stage_is_named(pirl_model):
    with pytest.raises(ValueError, match=r"unknown stage name\(s\) \['res6'\].*'stem'"):
        select_stages(pirl_model.backbone, ['res2', 'res6'])


def _blobs(n, dim, classes, spread, seed):
    rng = np.random.RandomState(seed)
    centres = rng.randn(classes, dim) * 3
    y = rng.randint(0, classes, n)
    x = centres[y] + spread * rng.randn(n, dim)
    return torch.from_numpy(x).float(), torch.from_numpy(y)


def test_linear_probe_separable_and_chance():
    x, y = _blobs(400, 32, 5, 0.5, seed=0)
    assert linear_probe(x[:300], y[:300], x[300:], y[300:]) == 100.0
    # labels independent of the features: chance (25 % for 4 classes) on a large test set
    rng = torch.Generator().manual_seed(0)
    feats = torch.randn(3300, 16, generator=rng)
    labels = torch.randint(0, 4, (3300, ), generator=rng)
    acc = linear_probe(feats[:300], labels[:300], feats[300:], labels[300:])
    assert 20.0 < acc < 30.0


def test_standardize_uses_train_statistics():
    rng = torch.Generator().manual_seed(0)
    train = torch.randn(50, 6, generator=rng) * 4 + 2
    train[:, 5] = 3.0  # a constant dimension maps to 0, not NaN
    test = torch.randn(20, 6, generator=rng)
    tr, te = standardize(train, test)
    mean, std = train.mean(0), train.std(0, unbiased=False)
    torch.testing.assert_close(tr[:, :5], (train[:, :5] - mean[:5]) / std[:5])
    torch.testing.assert_close(te[:, :5], (test[:, :5] - mean[:5]) / std[:5])
    assert (tr[:, 5] == 0).all() and torch.isfinite(te).all()
    # so the probe does not care about per-dimension scales and offsets of the features
    x, y = _blobs(600, 10, 3, 3.0, seed=2)
    scales = torch.logspace(-2, 2, 10)
    offsets = torch.linspace(-50, 50, 10)
    acc = linear_probe(x[:200], y[:200], x[200:], y[200:], weight_decay=1e-2)
    acc_affine = linear_probe(x[:200] * scales + offsets, y[:200], x[200:] * scales + offsets,
                              y[200:], weight_decay=1e-2)
    assert abs(acc - acc_affine) < 0.5


def test_linear_probe_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    x, y = _blobs(700, 10, 3, 3.0, seed=1)  # overlapping classes: neither 100 % nor chance
    train_x, train_y, test_x, test_y = x[:200], y[:200], x[200:], y[200:]
    wd = 1e-2
    ours = linear_probe(train_x, train_y, test_x, test_y, weight_decay=wd, max_iter=500)
    tr, te = standardize(train_x, test_x)
    # sklearn: C * sum CE + ||W||^2 / 2  ==  N * C * (mean CE + wd / 2 ||W||^2) with C = 1/(wd N)
    sk = LogisticRegression(C=1.0 / (wd * len(tr)), max_iter=5000, tol=1e-8)
    sk.fit(tr.numpy(), train_y.numpy())
    theirs = 100.0 * (sk.predict(te.numpy()) == test_y.numpy()).mean()
    assert 50.0 < theirs < 99.0
    assert abs(ours - theirs) < 2.0
    clf = train_linear_classifier(tr, train_y, 3, weight_decay=wd, max_iter=500)
    agree = (clf(te).argmax(1).numpy() == sk.predict(te.numpy())).mean()
    assert agree > 0.97
    # the same solution: centred weights close (softmax is invariant to a shared shift)
    w = clf.weight.numpy()
    w_sk = sk.coef_
    np.testing.assert_allclose(w - w.mean(0), w_sk - w_sk.mean(0), atol=2e-2)
    # deterministic
    assert linear_probe(train_x, train_y, test_x, test_y, weight_decay=wd, max_iter=500) == ours


def test_layer_probe_tool(tiny_tree, tiny_pirl_ckpt, tmp_path, capsys):
    import matplotlib.image as mpimg
    work = tmp_path / 'lp'
    report = layer_probe_api.main([
        PIRL_CFG, f'pirl={tiny_pirl_ckpt}', 'random', '--work-dir', str(work),
        '--num-train', '18', '--k', '5', '--cfg-options', *knn_options(tiny_tree)])
    stages = list(EXPECTED_SHAPES)
    assert report['stages'] == stages
    assert report['num_train'] == 18 and report['num_test'] == 12
    assert set(report['results']) == {'pirl', 'random'}
    for per_method in report['results'].values():
        assert set(per_method) == {'linear', 'knn'}
        for accs in per_method.values():
            assert list(accs) == stages
            assert all(0.0 <= v <= 100.0 for v in accs.values())
    saved = json.loads((work / 'layer_probe.json').read_text())
    assert saved['results'] == report['results']
    assert saved['layout']['res4']['dim'] == 512
    png = work / 'layer_probe.png'
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(str(png))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    out = capsys.readouterr().out
    assert '| checkpoint | probe | stem | res2 | res3 | res4 | res5 |' in out
    assert '| pirl | linear |' in out and '| random | knn |' in out
    assert str(work / 'layer_probe.json') in out
    # the probe-train subset is seeded: the same run gives the same numbers
    again = layer_probe_api.run(PIRL_CFG, ['random'], str(tmp_path / 'again'), method='linear',
                                num_train=18, k=5, progress=False,
                                cfg_options=options_dict(knn_options(tiny_tree)))
    assert again['results']['random']['linear'] == report['results']['random']['linear']


def test_layer_probe_errors(tiny_tree, tiny_pirl_ckpt, tmp_path):
    opts = options_dict(knn_options(tiny_tree))
    with pytest.raises(FileNotFoundError, match='no_such.pth'):
        layer_probe_api.run(PIRL_CFG, [str(tmp_path / 'no_such.pth')], str(tmp_path),
                            cfg_options=opts, progress=False)
    with pytest.raises(ValueError, match='unknown stage'):
        layer_probe_api.run(PIRL_CFG, ['random'], str(tmp_path), stages=['conv0'],
                            cfg_options=opts, progress=False)
    wide = dict(opts, **{'model.backbone.stem_channels': 64, 'model.backbone.base_channels': 64})
    with pytest.raises(ValueError, match='iter_2.pth does not fit the ResNet backbone'):
        layer_probe_api.run(PIRL_CFG, [tiny_pirl_ckpt], str(tmp_path), cfg_options=wide,
                            progress=False)
    cfg = tmp_path / 'plain.py'
    cfg.write_text(f"_base_ = ['{REPO}/configs/pirl/pirl_r50_8xb32.py']\n")
    with pytest.raises(KeyError, match='plain.py has no `knn_eval` section'):
        layer_probe_api.run(str(cfg), ['random'], str(tmp_path), progress=False)
    with pytest.raises(ValueError, match='method'):
        layer_probe_api.run(PIRL_CFG, ['random'], str(tmp_path), method='svm', cfg_options=opts)


def test_checkpoint_arguments(tmp_path):
    from mmssl_ext.cli.analysis_common import parse_checkpoints
    a, b = tmp_path / 'a' / 'iter_9.pth', tmp_path / 'b' / 'iter_9.pth'
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b'')
    assert parse_checkpoints([str(a), 'random', f'mine={b}']) == [
        ('iter_9', str(a)), ('random', 'random'), ('mine', str(b))]
    # two files of one name: the folder tells them apart
    assert [n for n, _ in parse_checkpoints([str(a), str(b)])] == ['a_iter_9', 'b_iter_9']
    assert parse_checkpoints([str(a), 'random'], names=['x', 'y']) == [
        ('x', str(a)), ('y', 'random')]
    with pytest.raises(ValueError, match='--names gives 1 names for 2 checkpoints'):
        parse_checkpoints([str(a), 'random'], names=['x'])
    with pytest.raises(ValueError, match=r"two checkpoints are named \['random'\]"):
        parse_checkpoints(['random', 'random'])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        parse_checkpoints([f'x={tmp_path}/nope.pth'])
