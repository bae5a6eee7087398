"""SeLa: Sinkhorn-Knopp marginals and labels against the official algorithm written in numpy, the
heads' loss, the label schedule, errors, and SeLaHook in tiny tools/train.py runs (2 gloo ranks,
exact resume)."""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.engine.hooks.sela_hook import SeLaHook, sela_schedule
from mmssl_ext.models.heads.sela_head import SeLaHead, sela_sinkhorn
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO
from tests.models.refresh_helpers import run_two_ranks, tiny_opts

SELA_CFG = osp.join(REPO, 'configs/sela/sela_r18-w32_1xb64-3000it_fmnist.py')


def _ref_optimize_l_sk(logits, lamb, tol):
    """The official optimize_L_sk (sinkhornknopp.py) in numpy: K x N, r / c scalings."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).T ** lamb  # K x N
    k, n = p.shape
    r, c = np.ones((k, 1)) / k, np.ones((n, 1)) / n
    err, count = 1e6, 0
    while err > tol:
        r = (1. / k) / (p @ c)
        c_new = (1. / n) / (r.T @ p).T
        if count % 10 == 0:
            err = np.nansum(np.abs(c / c_new - 1))
        c, count = c_new, count + 1
    return np.argmax(p * c.squeeze() * r, axis=0)


def test_sinkhorn_marginals_equal_the_constraint_and_labels_match_the_official_algorithm():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 6, generator=g, dtype=torch.float64) * 0.3
    logits[:, 0] += 0.5  # the raw argmax would favour cluster 0
    labels, q, iters, err = sela_sinkhorn(logits, lamb=5.0, tol=1e-9, max_iters=5000)
    assert err <= 1e-9
    np.testing.assert_allclose(q.sum(1).numpy(), np.ones(60), rtol=1e-12)  # each sample: 1
    np.testing.assert_allclose(q.sum(0).numpy(), np.full(6, 10.0), rtol=1e-8)  # each: N / K
    assert iters % 10 == 0 and torch.equal(labels, q.argmax(1))
    ref = _ref_optimize_l_sk(logits.numpy(), 5.0, 1e-12)
    assert (labels.numpy() == ref).all()
    counts = np.bincount(labels.numpy(), minlength=6)
    assert counts.max() - counts.min() <= 4  # near-equal, unlike the raw argmax
    assert np.bincount(logits.argmax(1).numpy(), minlength=6)[0] > 20


def test_sinkhorn_is_swavs_distributed_sinkhorn_on_log_softmax_over_lambda():
    """The maths agrees with mmpretrain's SwAV Sinkhorn: the same plan after convergence."""
    from mmpretrain.models.losses.swav_loss import distributed_sinkhorn
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 5, generator=g, dtype=torch.float64)
    _, q, _, _ = sela_sinkhorn(logits, lamb=4.0, tol=1e-12, max_iters=5000)
    swav = distributed_sinkhorn(torch.log_softmax(logits, 1), 3000, 1, 1 / 4.0)
    np.testing.assert_allclose(q.numpy(), swav.numpy(), rtol=1e-6, atol=1e-12)


def test_sinkhorn_errors():
    with pytest.raises(ValueError, match='K=5 clusters > N=4'):
        sela_sinkhorn(torch.randn(4, 5))
    # not converged within max_iters: the plan as it is, and its error for the caller's warning
    _, q, iters, err = sela_sinkhorn(torch.randn(50, 5) * 3, lamb=25, tol=0, max_iters=20)
    assert iters == 20 and err > 0 and torch.allclose(q.sum(1), torch.ones(50, dtype=q.dtype))


def test_head_loss_is_the_mean_cross_entropy_of_the_heads():
    torch.manual_seed(0)
    head = SeLaHead(in_channels=4, num_classes=3, num_heads=2)
    feats = torch.randn(5, 4)
    labels = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    ref = []
    for h, fc in enumerate(head.fcs):
        z = (feats @ fc.weight.t() + fc.bias).detach().double().numpy()
        ref.append(np.mean([np.log(np.exp(row).sum()) - row[y] for row, y in zip(z, labels[h])]))
    got = float(head.loss(feats, labels))
    np.testing.assert_allclose(got, np.mean(ref), rtol=1e-5)
    assert abs(float(head.loss(feats, labels.flip(0))) - got) > 1e-3  # heads swapped
    with pytest.raises(ValueError, match='num_classes >= 2'):
        SeLaHead(4, 1)


def test_schedule_is_the_official_optimize_times():
    # (E + 1.01) N (j / (n - 1))^2 samples with E = 50 / 10 epochs, N = 100, n = 5:
    # 0, 37.6, 150.3, 338.1, 601 samples -> iterations of 10 samples 0, 4, 16, 34 (61 > 50)
    assert sela_schedule(5, 100, 10, 50, 10) == [0, 4, 16, 34]
    times = [(5 + 1.01) * 100 * (j / 4) ** 2 for j in range(5)]
    assert [math.ceil(t / 10) for t in times][:4] == [0, 4, 16, 34]


def test_model_errors():
    cfg = dict(type='SeLa', backbone=dict(type='ResNet', depth=18, base_channels=8,
                                          stem_channels=8),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='SeLaHead', in_channels=64, num_classes=3, num_heads=2),
               num_samples=2)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match='K=3 classes'):
            MODELS.build(cfg)
        model = MODELS.build(dict(cfg, num_samples=6))
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in (0, 1)]
    with pytest.raises(RuntimeError, match='SeLaHook'):
        model.loss([torch.randn(2, 3, 16, 16)], samples)
    with pytest.raises(ValueError, match=r'\[0, 3\)'):
        model.set_pseudo_labels(torch.full((2, 6), 3))
    with pytest.raises(ValueError, match='num_opts'):
        SeLaHook(pipeline=[dict(type='PackInputs')], num_opts=0)


N_IMG, MAX_ITERS = 12, 6


def _opts(tree, batch_size):
    # 3 optimisations over 2 epochs of 12 images: before iterations 0 and 3 (and 10 > 6)
    return tiny_opts(tree, N_IMG, batch_size, MAX_ITERS) + [
        f'model.num_samples={N_IMG}', 'model.head.num_classes=3', 'model.head.num_heads=2',
        'model.head.in_channels=64', 'model.backbone.stem_channels=8',
        'model.backbone.base_channels=8', 'custom_hooks.0.num_opts=3',
        'custom_hooks.0.num_workers=0', 'custom_hooks.0.batch_size=8']


def test_hook_two_gloo_ranks(tiny_tree, tmp_path):
    recs = run_two_ranks(SELA_CFG, _opts(tiny_tree, 2), tmp_path, keys=['pseudo_labels'])
    for rec in recs:
        assert rec['world_size'] == 2 and rec['refreshed'] == [0, 3]
    for it in range(MAX_ITERS):
        assert torch.equal(recs[0]['before'][it]['pseudo_labels'],
                           recs[1]['before'][it]['pseudo_labels'])
    labels = recs[0]['before'][1]['pseudo_labels']
    for h in range(2):  # near an equal partition (4 images per class; the argmax of the
        counts = np.bincount(labels[h].numpy(), minlength=3)  # plan rounds it)
        assert counts.min() >= 3 and counts.max() <= 5, counts
    state = recs[0]['state']
    assert torch.equal(state['pseudo_labels'], recs[1]['state']['pseudo_labels'])
    assert torch.equal(state['head.fcs.1.weight'], recs[1]['state']['head.fcs.1.weight'])


def test_exact_resume(tiny_tree, tmp_path):
    _check_exact_resume(SELA_CFG, _opts(tiny_tree, 4) + _COMMON, tmp_path,
                        buffers=['pseudo_labels'], controls=())


def test_collapse_monitor_stacks_every_heads_softmax():
    from mmssl_ext.engine.hooks.collapse_monitor import model_collapse_outputs
    cfg = dict(type='SeLa', backbone=dict(type='ResNet', depth=18, base_channels=8,
                                          stem_channels=8),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='SeLaHead', in_channels=64, num_classes=3, num_heads=2),
               num_samples=6)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg).eval()
    img = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        out = model_collapse_outputs(model, [img])
        feat = model.backbone(img)[-1].mean(dim=(2, 3))
        rows = [torch.softmax(feat @ fc.weight.t() + fc.bias, dim=1) for fc in model.head.fcs]
    torch.testing.assert_close(out['embedding'], feat)
    assert out['probs'].shape == (2 * 4, 3)  # heads x images rows over K classes
    torch.testing.assert_close(out['probs'], torch.cat(rows))
