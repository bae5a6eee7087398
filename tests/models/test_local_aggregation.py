"""Local Aggregation: the neighbour sets on a toy bank with known structure, the loss against a
numpy reference, the model's errors, and the clustering hook in tiny tools/train.py runs (one
process, 2 gloo ranks, exact resume)."""
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope

import mmssl_ext  # noqa: F401
from mmssl_ext.models.losses.local_agg_loss import (LocalAggregationLoss,
                                                    local_aggregation_neighbours)
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO
from tests.models.refresh_helpers import TINY_NET, run, run_two_ranks, tiny_opts

LA_CFG = osp.join(REPO, 'configs/local_aggregation/'
                        'local-aggregation_r18-w32_1xb64-3000it_fmnist.py')


def _ref_loss(sims, close, t, eps=1e-7):
    out = []
    for s, c in zip(sims, close):
        p = np.exp(s.astype(np.float64) / t)
        out.append(-np.log(p[c].sum() / p.sum() + eps))
    return np.mean(out)


def test_loss_matches_numpy_reference_and_depends_on_the_mask():
    g = torch.Generator().manual_seed(0)
    sims = torch.rand(5, 7, generator=g) * 2 - 1
    close = torch.rand(5, 7, generator=g) > 0.5
    close[:, 0] = True
    close[3] = False  # no close neighbour at all: -log(eps)
    loss = LocalAggregationLoss(temperature=0.1)
    got = float(loss(sims, close))
    np.testing.assert_allclose(got, _ref_loss(sims.numpy(), close.numpy(), 0.1), rtol=1e-5)
    # a mask moved by one column (a wrong index) changes the value
    shifted = torch.roll(close, 1, dims=1)
    assert abs(float(loss(sims, shifted)) - got) > 1e-3
    # finite gradients, also for the row without close neighbours
    x = sims.clone().requires_grad_(True)
    loss(x, close).backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[3] == 0)
    with pytest.raises(ValueError, match='temperature'):
        LocalAggregationLoss(temperature=0)


def test_neighbours_on_a_toy_bank_with_known_structure():
    # 12 entries in 3 tight groups around orthogonal directions; group g = entries 4g..4g+3
    d = torch.eye(3)
    bank = F.normalize(d.repeat_interleave(4, 0) + 0.01 * torch.arange(12.)[:, None], dim=1)
    groups = torch.arange(12) // 4
    # run 0 clusters by group; run 1 puts entries 0, 1 with group 1 and the rest of group 0 apart
    run1 = groups.clone()
    run1[torch.tensor([0, 1])] = 5
    run1[torch.tensor([4, 5, 6, 7])] = 5
    labels = torch.stack([groups, run1])
    query = F.normalize(d[[0, 1]] + 0.001, dim=1)  # near group 0 and group 1
    idx = torch.tensor([2, 5])  # the samples' own indices
    sims = query @ bank.t()
    back, close = local_aggregation_neighbours(sims, idx, labels, num_background=6)
    # background: the 4 entries of the own group first, then 2 of the next-closest
    assert set(back[0, :4].tolist()) == {0, 1, 2, 3} and set(back[1, :4].tolist()) == {4, 5, 6, 7}
    # close for sample 2 (group 0, run-1 cluster 0): only group 0 (the union with run 1 adds
    # nothing new: entries 0, 1 are in group 0)
    assert {int(j) for j, c in zip(back[0], close[0]) if c} == {0, 1, 2, 3}
    # close for sample 5 (group 1, run-1 cluster 5): group 1, plus entries 0, 1 through run 1
    got = {int(j) for j, c in zip(back[1], close[1]) if c}
    assert {4, 5, 6, 7} <= got and got <= {0, 1, 4, 5, 6, 7}
    assert got == {4, 5, 6, 7} | ({0, 1} & set(back[1].tolist()))
    with pytest.raises(ValueError, match='num_background'):
        local_aggregation_neighbours(sims, idx, labels, num_background=13)


def _tiny_model(n=10, **kw):
    cfg = dict(type='LocalAggregation', backbone=dict(type='ResNet', depth=18, base_channels=8,
                                                      stem_channels=8),
               neck=dict(type='LinearNeck', in_channels=64, out_channels=16, gap_dim=2),
               memory_bank=dict(type='MemoryBank', length=n, feat_dim=16, num_negatives=4),
               num_clusters=[3, 2], num_background=5)
    cfg.update(kw)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def test_model_loss_is_the_la_loss_on_the_bank_after_clustering():
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    model = _tiny_model()
    img = torch.randn(4, 3, 16, 16)
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in (1, 3, 5, 7)]
    out = model.loss([img], samples)  # not clustered: NPID's warm-up loss
    assert 'close_fraction' not in out and torch.isfinite(out['loss'])
    labels = torch.tensor([[0, 1, 2] * 3 + [0], [0, 1] * 5])
    model.set_cluster_labels(labels)
    bank = model.memory_bank.feats.clone()
    model.eval()  # BatchNorm in eval: the embedding below is the one the loss used
    v = model.embed(img).detach()
    out = model.loss([img], samples)
    sims = (v @ bank.t()).numpy()
    back = np.argsort(-sims, axis=1)[:, :5]
    own = labels[:, [1, 3, 5, 7]].numpy()
    close = np.stack([[any(labels[r, j] == own[r, b] for r in range(2)) for j in back[b]]
                      for b in range(4)])
    ref = _ref_loss(np.take_along_axis(sims, back, 1), close, 0.07)
    np.testing.assert_allclose(float(out['loss']), ref, rtol=1e-4)
    assert not torch.equal(model.memory_bank.feats, bank)  # the bank was updated
    with pytest.raises(ValueError, match='shape'):
        model.set_cluster_labels(labels[:1])
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        model.set_cluster_labels(torch.tensor([[0, 1, 2] * 3 + [0], [0, 2] * 5]))


def test_model_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r'\[2, N=10\]'):
        _tiny_model(num_clusters=[11])
    with pytest.raises(ValueError, match='non-empty list'):
        _tiny_model(num_clusters=3)
    with pytest.raises(ValueError, match='num_background=11'):
        _tiny_model(num_background=11)


N_IMG, MAX_ITERS, EPOCH_LEN = 12, 6, 3


def _opts(tree, batch_size):
    return tiny_opts(tree, N_IMG, batch_size, MAX_ITERS) + [
        f'model.memory_bank.length={N_IMG}', 'model.memory_bank.num_negatives=6',
        'model.num_clusters=[3,4]', 'model.num_background=6', *TINY_NET]


def test_hook_two_gloo_ranks_match_one_process(tiny_tree, tmp_path):
    """Warm start for epoch 0, clustering at the start of epoch 1 (iteration 3), identical
    bank and labels on both ranks; the labels are k-means of the bank as it was then."""
    from mmssl_ext.clustering import kmeans
    recs = run_two_ranks(LA_CFG, _opts(tiny_tree, 2), tmp_path,
                         keys=['cluster_labels', 'memory_bank.feats'])
    for rec in recs:
        assert rec['world_size'] == 2 and rec['refreshed'] == [EPOCH_LEN]
    for it in range(MAX_ITERS):
        for key in ('cluster_labels', 'memory_bank.feats'):
            assert torch.equal(recs[0]['before'][it][key], recs[1]['before'][it][key])
    # recorded before the hook's refresh of the same iteration
    assert (recs[0]['before'][EPOCH_LEN]['cluster_labels'] == -1).all()
    labels = recs[0]['before'][EPOCH_LEN + 1]['cluster_labels']
    assert torch.equal(labels, recs[0]['before'][MAX_ITERS - 1]['cluster_labels'])
    # weights, bank and labels agree (BatchNorm statistics are per rank without SyncBN)
    differ = [k for k in recs[0]['state']
              if not torch.equal(recs[0]['state'][k], recs[1]['state'][k])]
    assert differ and all('running_' in k for k in differ), differ
    # the labels are the k-means (seeds 1234, 1235) of the bank the hook saw
    bank = recs[0]['before'][EPOCH_LEN]['memory_bank.feats']
    for r, k in enumerate((3, 4)):
        ref = kmeans(bank, k, niter=20, seed=1234 + r, l2_normalize=False, gpu=False)
        assert torch.equal(labels[r], torch.from_numpy(ref.assignments))


def test_exact_resume(tiny_tree, tmp_path):
    """The resumed run re-clusters at the same iteration (the first after the checkpoint)."""
    opts = _opts(tiny_tree, 4) + _COMMON
    _check_exact_resume(LA_CFG, opts, tmp_path, buffers=['memory_bank.feats', 'cluster_labels'],
                        controls=())


def test_hook_rejects_bad_configuration(tiny_tree, tmp_path):
    from mmssl_ext.engine.hooks.la_hook import LocalAggregationHook
    with pytest.raises(ValueError, match='start_epoch'):
        LocalAggregationHook(start_epoch=-1)
    # a bank longer than the training set is refused before the first iteration
    with pytest.raises(ValueError, match='model.memory_bank.length=16'):
        run(LA_CFG, tiny_opts(tiny_tree, N_IMG, 4, 2) + [
            'model.memory_bank.length=16', 'model.memory_bank.num_negatives=6',
            'model.num_clusters=[3]', 'model.num_background=6'],
            str(tmp_path / 'w'), str(tmp_path), keys=[])
