"""ODC: the memory (EMA features, nearest-centroid labels, centroid means, small clusters) against
independent numpy references, in one process and on 2 gloo ranks; the re-weighted loss; a short
tools/train.py run of the Fashion-MNIST config; exact resume."""
import copy
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.models.memories import ODCMemory
from mmssl_ext.models.memories.odc_memory import odc_class_weights
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO, free_port, gloo_group

ODC_FMNIST_CFG = osp.join(REPO, 'configs/odc/odc_r18-w32_1xb64-3000it_fmnist.py')
ODC_IN1K_CFG = osp.join(REPO, 'configs/odc/odc_r50_8xb64-440e_in1k.py')


# ---------------------------------------------------------------------------- references


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ref_nearest(x, centroids):
    return np.array([int(np.argmin([np.sum((xi - c) ** 2) for c in centroids])) for xi in x])


def _ref_means(feats, labels, k, previous):
    out = previous.copy()
    for c in range(k):
        if (labels == c).any():
            out[c] = feats[labels == c].mean(0)
    return out


def _random_memory(n=30, d=6, k=4, min_size=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mem = ODCMemory(length=n, feat_dim=d, momentum=0.5, num_classes=k, min_cluster_size=min_size)
    feats = torch.randn(n, d, generator=g)
    labels = torch.arange(n) % k
    mem.init_memory(feats, labels)
    return mem, g


# ---------------------------------------------------------------------------- memory


def test_init_memory_centroids_are_label_means():
    mem, _ = _random_memory()
    feats = mem.feats.numpy()
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-6)
    ref = _ref_means(feats, mem.labels.numpy(), 4, np.zeros((4, 6)))
    np.testing.assert_allclose(mem.centroids.numpy(), ref, atol=1e-6)
    assert {'feats', 'labels', 'centroids'} <= set(mem.state_dict())


def test_update_matches_reference():
    mem, g = _random_memory()
    for step in range(4):
        old_feats = mem.feats.numpy().astype(np.float64)
        old_labels = mem.labels.numpy().copy()
        old_centroids = mem.centroids.numpy().astype(np.float64)
        idx = torch.tensor([3, 17, 5, 17, 28, 0])  # a duplicate: averaged, one EMA step
        new = torch.randn(6, 6, generator=g)
        ratio = mem.update(idx, new)
        # features: EMA of the normalised mean of the duplicates, re-normalised
        f = _normalize(new.numpy().astype(np.float64))
        exp_feats = old_feats.copy()
        for i in sorted(set(idx.tolist())):
            mean = f[idx.numpy() == i].mean(0)
            exp_feats[i] = _normalize((0.5 * old_feats[i] + 0.5 * mean)[None])[0]
        np.testing.assert_allclose(mem.feats.numpy(), exp_feats, atol=1e-6)
        # labels: the batch's samples go to the nearest centroid (centroids before the update)
        uniq = np.array(sorted(set(idx.tolist())))
        exp_labels = old_labels.copy()
        exp_labels[uniq] = _ref_nearest(exp_feats[uniq], old_centroids)
        assert mem.labels.numpy().tolist() == exp_labels.tolist(), step
        assert float(ratio) == pytest.approx(np.mean(exp_labels[uniq] != old_labels[uniq]))
        # centroids: every non-empty cluster's centroid is the mean of its members' features
        exp_c = _ref_means(exp_feats, exp_labels, 4, old_centroids)
        np.testing.assert_allclose(mem.centroids.numpy(), exp_c, atol=1e-5)


def test_small_clusters_dissolved_and_empty_clusters_refilled():
    n, k, d = 40, 5, 4
    g = torch.Generator().manual_seed(1)
    mem = ODCMemory(length=n, feat_dim=d, num_classes=k, min_cluster_size=5)
    # clusters 0 (20), 1 (12), 2 (5), 3 (3: small), 4 (0: empty)
    labels = torch.tensor([0] * 20 + [1] * 12 + [2] * 5 + [3] * 3)
    mem.init_memory(torch.randn(n, d, generator=g), labels)
    feats = mem.feats.numpy().astype(np.float64)
    centroids = mem.centroids.numpy().astype(np.float64)
    moved = mem.deal_with_small_clusters()
    new = mem.labels.numpy()
    sizes = np.bincount(new, minlength=k)
    assert (sizes > 0).all(), sizes
    # the members of the small cluster joined their nearest cluster among 0, 1, 2 ...
    large = np.array([0, 1, 2])
    target = large[_ref_nearest(feats[37:], centroids[large])]
    # ... unless that cluster was split afterwards (then they may be in a new half)
    for i, t in zip(range(37, 40), target):
        assert new[i] == t or (new[i] in (3, 4) and t in (0, 1))
    # clusters 3 and 4 were re-created from the largest clusters (0, and then 0 or 1)
    assert set(np.flatnonzero(new != labels.numpy())) >= {37, 38, 39}
    assert moved == int((new != labels.numpy()).sum())
    assert set(new[:32]) <= {0, 1, 3, 4} and (new[32:37] == 2).all()
    np.testing.assert_allclose(mem.centroids.numpy(),
                               _ref_means(feats, new, k, centroids), atol=1e-6)
    # nothing small any more -> no-op
    mem.min_cluster_size = 1
    assert mem.deal_with_small_clusters() == 0


def test_split_of_identical_features_still_fills_the_empty_cluster():
    mem = ODCMemory(length=6, feat_dim=3, num_classes=2, min_cluster_size=1)
    mem.init_memory(torch.ones(6, 3), torch.zeros(6, dtype=torch.long))
    assert mem.deal_with_small_clusters() >= 1
    assert (mem.cluster_sizes() > 0).all()


def test_memory_argument_errors():
    with pytest.raises(ValueError, match=r'K=11 clusters .* > N=10 samples'):
        ODCMemory(length=10, feat_dim=4, num_classes=11)
    mem = ODCMemory(length=10, feat_dim=4, num_classes=3)
    with pytest.raises(RuntimeError, match='ODCHook'):
        mem.update(torch.tensor([0]), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r'shape \(10, 4\)'):
        mem.init_memory(torch.randn(9, 4), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r'\[0, 3\)'):
        mem.init_memory(torch.randn(10, 4), torch.full((10, ), 3))


# ---------------------------------------------------------------------------- DDP (memory)

WORLD_SIZE = 2


def _ddp_batches():
    g = torch.Generator().manual_seed(7)
    steps = []
    for step in range(4):
        per_rank = [(torch.randint(0, 30, (3 + rank, ), generator=g),
                     torch.randn(3 + rank, 6, generator=g)) for rank in range(WORLD_SIZE)]
        per_rank[1][0][0] = per_rank[0][0][0]  # an index on both ranks
        steps.append(per_rank)
    return steps


def _memory_worker(rank, port, out_dir):
    with gloo_group(rank, port, WORLD_SIZE):
        mem, _ = _random_memory(min_size=8)
        ratios, moved = [], 0
        for per_rank in _ddp_batches():
            ratios.append(float(mem.update(*per_rank[rank])))
            moved += mem.deal_with_small_clusters()
        torch.save(dict(state=mem.state_dict(), ratios=ratios, moved=moved),
                   os.path.join(out_dir, f'rank{rank}.pth'))


def test_memory_identical_on_two_ranks_and_equal_to_one_process(tmp_path):
    mp.spawn(_memory_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(2))
    for key in ('feats', 'labels', 'centroids'):
        assert torch.equal(r0['state'][key], r1['state'][key]), key
    assert r0['ratios'] == r1['ratios']
    assert r0['moved'] == r1['moved'] > 0  # small clusters were dissolved / split on both
    # one process updating with the concatenated batches (rank 0 first)
    single, _ = _random_memory(min_size=8)
    ratios = []
    for per_rank in _ddp_batches():
        ratios.append(float(single.update(torch.cat([p[0] for p in per_rank]),
                                          torch.cat([p[1] for p in per_rank]))))
        single.deal_with_small_clusters()
    assert torch.equal(single.labels, r0['state']['labels'])
    torch.testing.assert_close(single.feats, r0['state']['feats'], rtol=0, atol=1e-6)
    torch.testing.assert_close(single.centroids, r0['state']['centroids'], rtol=0, atol=1e-6)
    assert ratios == pytest.approx(r0['ratios'])
    # a local-only update (no gather) would differ
    local, _ = _random_memory(min_size=8)
    for per_rank in _ddp_batches():
        local.update(*per_rank[0])
        local.deal_with_small_clusters()
    assert not torch.allclose(local.feats, r0['state']['feats'], atol=1e-3)


# ---------------------------------------------------------------------------- model


def _tiny_model(n=10, k=3, width=8):
    cfg = Config.fromfile(ODC_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(stem_channels=width, base_channels=width)
    model_cfg.neck.update(in_channels=8 * width)
    model_cfg.head.num_classes = k
    model_cfg.memory_bank.update(length=n, num_classes=k, min_cluster_size=1)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def test_class_weights_are_inverse_sqrt_sizes():
    w = odc_class_weights(torch.tensor([4, 1, 0, 16]))
    ref = np.array([1 / 2, 1, 0, 1 / 4])
    ref = ref * 3 / ref.sum()
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)


def test_loss_is_reweighted_cross_entropy_then_memory_update():
    torch.manual_seed(0)
    model = _tiny_model()
    model.train()
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])  # sizes 6, 2, 2
    model.memory_bank.init_memory(torch.randn(10, 256, generator=g), labels)
    img = torch.randn(4, 3, 32, 32, generator=g)
    idx = [0, 6, 8, 3]
    bank_before = model.memory_bank.feats.clone()
    torch.manual_seed(1)  # the neck's dropout draws the same mask in both forwards
    out = model.loss(img, [DataSample(metainfo=dict(sample_idx=i)) for i in idx])
    assert set(out) == {'loss', 'cluster_acc', 'label_change_ratio'}
    assert not out['label_change_ratio'].requires_grad
    with torch.no_grad():
        torch.manual_seed(1)
        z = model.neck(model.backbone(img))[0]
        logits = (z @ model.head.fc.weight.t() + model.head.fc.bias).double()
    target = labels[idx]
    w = 1 / np.sqrt(np.array([6., 2., 2.]))[target.numpy()]
    nll = -torch.log_softmax(logits, 1)[torch.arange(4), target].numpy()
    assert float(out['loss']) == pytest.approx(float((w * nll).sum() / w.sum()), rel=1e-4)
    out['loss'].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    changed = (model.memory_bank.feats != bank_before).any(1).nonzero().flatten().tolist()
    assert changed == sorted(idx)


def test_neck_is_mmselfsups_odc_neck():
    """fc - BN(affine=False, momentum 0.001) - ReLU - dropout 0.5 - fc - ReLU, written out."""
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = MODELS.build(dict(type='ODCNeck', in_channels=8, hid_channels=6, out_channels=5,
                                 norm_cfg=dict(type='BN1d')))
    neck.init_weights()
    bn = neck.bn0
    assert bn.weight is None and bn.bias is None and bn.momentum == 0.001
    assert isinstance(neck.dropout, torch.nn.Dropout) and neck.dropout.p == 0.5
    x = torch.randn(4, 8, 3, 3)
    pooled = x.mean((2, 3))
    h = pooled @ neck.fc0.weight.t() + neck.fc0.bias
    neck.train()
    torch.manual_seed(2)
    out = neck([x])[0]
    torch.manual_seed(2)
    mask = torch.nn.functional.dropout(torch.ones(4, 6), 0.5, True)  # the same draw
    hn = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps)
    ref = torch.relu(torch.relu(hn) * mask @ neck.fc1.weight.t() + neck.fc1.bias)
    torch.testing.assert_close(out, ref)
    assert (out >= 0).all()
    # the running statistics move by 0.001 per step
    torch.testing.assert_close(bn.running_mean, 0.001 * h.mean(0).detach())
    neck.eval()  # no dropout, running statistics
    ev = neck([x])[0]
    hn = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    ref = torch.relu(torch.relu(hn) @ neck.fc1.weight.t() + neck.fc1.bias)
    torch.testing.assert_close(ev, ref)
    # every piece can be switched back
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = MODELS.build(dict(type='ODCNeck', in_channels=8, hid_channels=6, out_channels=5,
                                  norm_cfg=dict(type='BN1d', affine=True, momentum=0.1),
                                  dropout=0., last_relu=False))
    assert plain.bn0.weight is not None and plain.bn0.momentum == 0.1
    assert isinstance(plain.dropout, torch.nn.Identity) and not plain.last_relu
    with pytest.raises(ValueError, match='dropout must be in'):
        MODELS.build(dict(type='ODCNeck', in_channels=8, hid_channels=6, out_channels=5,
                          dropout=1.0))


def test_model_errors():
    model = _tiny_model()
    with pytest.raises(RuntimeError, match='ODCHook'):
        model.loss(torch.randn(2, 3, 32, 32), [DataSample(metainfo=dict(sample_idx=0))] * 2)
    cfg = Config.fromfile(ODC_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.head.num_classes = 7
    with DefaultScope.overwrite_default_scope('mmpretrain'), \
            pytest.raises(ValueError, match='head.num_classes=7 must equal'):
        MODELS.build(model_cfg)


def test_in1k_config():
    cfg = Config.fromfile(ODC_IN1K_CFG)
    assert cfg.model.memory_bank.length == 1281167 and cfg.model.memory_bank.num_classes == 10000
    assert cfg.model.head.num_classes == 10000 and cfg.custom_hooks[0].type == 'ODCHook'


# ---------------------------------------------------------------------------- training runs


def _tiny_opts(tree, n=12, k=3):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'train_dataloader.dataset.indices={n}', f'model.memory_bank.length={n}',
            f'model.memory_bank.num_classes={k}', f'model.head.num_classes={k}',
            'model.memory_bank.min_cluster_size=2', 'custom_hooks.0.num_workers=0',
            'custom_hooks.0.batch_size=8']


def test_fmnist_config_trains_through_tools_train(tiny_tree, tmp_path):
    work = str(tmp_path / 'odc')
    runner = train_api.main([ODC_FMNIST_CFG, '--work-dir', work, '--cfg-options',
                             *_tiny_opts(tiny_tree), 'train_cfg.max_iters=5',
                             'default_hooks.checkpoint.interval=5',
                             'default_hooks.logger.interval=1'])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 5 and np.isfinite(losses).all()
    bank = runner.model.memory_bank
    assert bank.initialized and (bank.cluster_sizes() > 0).all()
    np.testing.assert_allclose(
        bank.centroids.numpy(),
        _ref_means(bank.feats.numpy(), bank.labels.numpy(), 3, np.zeros((3, 256))), atol=1e-5)
    ckpt = torch.load(f'{work}/iter_5.pth', map_location='cpu', weights_only=False)
    for key in ('memory_bank.feats', 'memory_bank.labels', 'memory_bank.centroids'):
        assert key in ckpt['state_dict']


def test_odc_exact_resume(tiny_tree, tmp_path):
    """Memory features, labels, centroids (buffers).  ODC draws no random number outside the
    data pipeline, which mmengine's advance replays, so only the naive control can fail."""
    _check_exact_resume(ODC_FMNIST_CFG, _tiny_opts(tiny_tree) + _COMMON, tmp_path,
                        buffers=['memory_bank.feats', 'memory_bank.labels',
                                 'memory_bank.centroids'], controls=('before_advance', ))
