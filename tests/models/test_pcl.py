"""PCL: the concentration estimate on known clusters and ProtoNCE against loop references, the
model's warm-up and errors, and PCLHook in tiny tools/train.py runs (one process, 2 gloo ranks,
exact resume)."""
import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.models.losses.pcl_loss import ProtoNCELoss, pcl_concentration
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO
from tests.models.refresh_helpers import run_two_ranks, tiny_opts

PCL_CFG = osp.join(REPO, 'configs/pcl/pcl-v2_r18-w32_1xb64-3000it_fmnist.py')


def _ref_concentration(x, labels, centroids, t):
    """The official loop: per-cluster lists of distances, then the same steps, one by one."""
    k = len(centroids)
    dists = [[] for _ in range(k)]
    for i, c in enumerate(labels):
        dists[c].append(math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i], centroids[c]))))
    phi = [0.0] * k
    for c, d in enumerate(dists):
        if len(d) > 1:
            phi[c] = sum(d) / len(d) / math.log(len(d) + 10)
    dmax = max(phi)
    phi = [dmax if len(d) <= 1 else p for d, p in zip(dists, phi)]
    lo, hi = np.percentile(phi, 10), np.percentile(phi, 90)
    phi = [min(max(p, lo), hi) for p in phi]
    return [t * p / (sum(phi) / k) for p in phi]


def test_concentration_on_known_clusters():
    rng = np.random.RandomState(0)
    # 5 clusters around far-apart centres with spreads 0.01 .. 0.5 and sizes 6, 8, 10, 12, 1
    spreads, sizes = [0.01, 0.05, 0.1, 0.5, 0.2], [6, 8, 10, 12, 1]
    centres = np.eye(5) * 10
    x = np.concatenate([c + s * rng.randn(n, 5) for c, s, n in zip(centres, spreads, sizes)])
    labels = np.repeat(np.arange(5), sizes)
    cents = np.stack([x[labels == c].mean(0) for c in range(5)])
    phi = pcl_concentration(x, labels, cents, temperature=0.2)
    np.testing.assert_allclose(phi, _ref_concentration(x, labels, cents, 0.2), rtol=1e-10)
    np.testing.assert_allclose(phi.mean(), 0.2)
    # the tighter the cluster, the smaller phi (sharper prototype); the singleton gets the
    # largest, clipped to the 90th percentile like every other value
    assert phi[0] < phi[1] < phi[2] < phi[3]
    assert phi[4] == phi.max()
    with pytest.raises(ValueError, match='none of the K=3 clusters'):
        pcl_concentration(x[:3], np.arange(3), x[:3], 0.2)


def _ref_proto_nce(q, pos, neg, protos, phi):
    q, protos, phi = q.double().numpy(), protos.double().numpy(), phi.double().numpy()
    ids = list(pos) + list(neg)
    out = 0.0
    for b in range(len(q)):
        logits = [q[b] @ protos[j] / phi[j] for j in ids]
        m = max(logits)
        out += -(logits[b] - m - math.log(sum(math.exp(v - m) for v in logits)))
    return out / len(q)


def test_proto_nce_matches_reference_and_depends_on_the_ids():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    protos = F.normalize(torch.randn(10, 8, generator=g), dim=1)
    phi = torch.rand(10, generator=g) * 0.3 + 0.05
    pos, neg = torch.tensor([3, 3, 7, 1]), torch.tensor([0, 2, 5, 9])
    got = float(ProtoNCELoss()(q, pos, neg, protos, phi))
    np.testing.assert_allclose(got, _ref_proto_nce(q, pos.tolist(), neg.tolist(), protos, phi),
                               rtol=1e-5)
    swapped = torch.tensor([7, 3, 3, 1])  # a wrong positive index changes the value
    assert abs(float(ProtoNCELoss()(q, swapped, neg, protos, phi)) - got) > 1e-3


def _tiny_model(**kw):
    cfg = dict(type='PCL', backbone=dict(type='ResNet', depth=18, base_channels=8,
                                         stem_channels=8),
               neck=dict(type='MoCoV2Neck', in_channels=64, hid_channels=32, out_channels=16,
                         with_avg_pool=True),
               head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'),
                         temperature=0.2),
               num_samples=10, num_clusters=[3, 4], num_negative_prototypes=None,
               queue_len=8, feat_dim=16)
    cfg.update(kw)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def test_warm_up_is_infonce_then_protonce_is_added():
    torch.manual_seed(0)
    model = _tiny_model()
    views = [torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)]
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in (0, 2, 4, 6)]
    assert set(model.loss(views, samples)) == {'loss'}  # warm-up: InfoNCE only
    labels = [torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]), torch.arange(10) % 4]
    for m, k in enumerate((3, 4)):
        model.set_prototypes(m, labels[m], F.normalize(torch.randn(k, 16), dim=1),
                             torch.rand(k) + 0.1)
    model.eval()  # BatchNorm in eval: q below is the loss's query
    q = F.normalize(model.neck(model.backbone(views[0]))[0], dim=1).detach()
    out = model.loss(views, samples)
    idx = [0, 2, 4, 6]
    ref = []
    for m, k in enumerate((3, 4)):
        _, protos, phi = model.prototypes(m)
        pos = labels[m][idx].tolist()
        neg = [c for c in range(k) if c not in pos]  # None: every free prototype
        ref.append(_ref_proto_nce(q, pos, neg, protos, phi))
    np.testing.assert_allclose(float(out['loss_proto']), np.mean(ref), rtol=1e-4)


def test_model_rejects_bad_configuration():
    with pytest.raises(ValueError, match=r'\[2, num_samples=10\]'):
        _tiny_model(num_clusters=[11])
    with pytest.raises(ValueError, match='non-empty list'):
        _tiny_model(num_clusters=[])
    model = _tiny_model()
    with pytest.raises(ValueError, match='shapes'):
        model.set_prototypes(0, torch.zeros(9, dtype=torch.long), torch.zeros(3, 16),
                             torch.ones(3))
    with pytest.raises(ValueError, match=r'\[0, 3\)'):
        model.set_prototypes(0, torch.full((10, ), 3), torch.zeros(3, 16), torch.ones(3))
    views = [torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)]  # 8 % 3 != 0
    with pytest.raises(ValueError, match='queue_len=8 is not a multiple of the global batch 3'):
        model.loss(views, [DataSample(metainfo=dict(sample_idx=i)) for i in range(3)])
    from mmssl_ext.engine.hooks.pcl_hook import PCLHook
    with pytest.raises(ValueError, match='warmup_epochs'):
        PCLHook(pipeline=[dict(type='PackInputs')], warmup_epochs=-1)


N_IMG, MAX_ITERS, EPOCH_LEN = 12, 6, 3
KEYS = ['im2cluster_0', 'prototypes_0', 'concentration_0', 'im2cluster_1', 'queue']


def _opts(tree, batch_size):
    return tiny_opts(tree, N_IMG, batch_size, MAX_ITERS) + [
        f'model.num_samples={N_IMG}', 'model.num_clusters=[3,4]', 'model.queue_len=16',
        'model.neck.in_channels=64', 'model.neck.hid_channels=32', 'custom_hooks.0.warmup_epochs=1',
        'custom_hooks.0.num_workers=0', 'custom_hooks.0.batch_size=8',
        'model.backbone.stem_channels=8', 'model.backbone.base_channels=8']


def test_hook_two_gloo_ranks(tiny_tree, tmp_path):
    """InfoNCE for epoch 0, prototypes from the start of epoch 1 (iteration 3) on: the same
    prototypes, concentrations and queue on both ranks; the mean concentration is tau."""
    recs = run_two_ranks(PCL_CFG, _opts(tiny_tree, 2), tmp_path, keys=KEYS)
    for rec in recs:
        assert rec['world_size'] == 2 and rec['refreshed'] == [EPOCH_LEN]
    for it in range(MAX_ITERS):
        for key in KEYS:
            assert torch.equal(recs[0]['before'][it][key], recs[1]['before'][it][key]), key
    assert (recs[0]['before'][EPOCH_LEN]['im2cluster_0'] == -1).all()  # before the refresh
    after = recs[0]['before'][EPOCH_LEN + 1]
    assert after['im2cluster_0'].min() >= 0 and after['im2cluster_0'].max() < 3
    np.testing.assert_allclose(after['concentration_0'].mean(), 0.2, rtol=1e-5)
    np.testing.assert_allclose(after['prototypes_0'].norm(dim=1), 1.0, rtol=1e-5)


def test_exact_resume(tiny_tree, tmp_path):
    _check_exact_resume(PCL_CFG, _opts(tiny_tree, 4) + _COMMON, tmp_path,
                        buffers=KEYS + ['queue_ptr'], controls=())
