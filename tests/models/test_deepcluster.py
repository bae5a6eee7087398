"""DeepCluster: the model (loss, pseudo-label buffer, head re-initialisation, Sobel input), the
cluster-uniform sampler, a short tools/train.py run of the Fashion-MNIST config, exact resume."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.datasets import samplers as samplers_mod
from mmssl_ext.datasets.samplers import ClusterUniformSampler
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO

DC_FMNIST_CFG = osp.join(REPO, 'configs/deepcluster/deepcluster_r18-w32_1xb64-3000it_fmnist.py')
DC_IN1K_CFG = osp.join(REPO, 'configs/deepcluster/deepcluster_r50_8xb64-200e_in1k.py')


def _tiny_model(num_samples=10, k=4, width=8):
    cfg = Config.fromfile(DC_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(stem_channels=width, base_channels=width)
    model_cfg.head.update(num_classes=k, in_channels=8 * width)
    model_cfg.num_samples = num_samples
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _samples(idx):
    return [DataSample(metainfo=dict(sample_idx=i)) for i in idx]


# ---------------------------------------------------------------------------- model


def test_loss_is_cross_entropy_of_the_pseudo_labels():
    torch.manual_seed(0)
    model = _tiny_model()
    model.train()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    model.set_pseudo_labels(labels)
    img = torch.randn(4, 3, 32, 32)
    idx = [7, 2, 9, 4]
    out = model.loss(img, _samples(idx))
    assert set(out) == {'loss', 'cluster_acc'} and not out['cluster_acc'].requires_grad
    # independent reference: pooled last stage -> W x + b -> -log softmax at the label
    with torch.no_grad():
        feat = model.backbone(img)[-1].mean(dim=(2, 3))
        logits = feat @ model.head.fc.weight.t() + model.head.fc.bias
        target = torch.tensor([labels[i] for i in idx])
        ref = -torch.log_softmax(logits.double(), 1)[torch.arange(4), target].mean()
    assert abs(float(out['loss']) - float(ref)) < 1e-4
    out['loss'].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.head.fc.weight.grad.abs().sum() > 0


def test_labels_buffer_checkpointed_and_checked():
    model = _tiny_model(num_samples=10, k=4)
    assert 'pseudo_labels' in model.state_dict()
    assert model.pseudo_labels.tolist() == [-1] * 10 and not model.labels_initialized
    with pytest.raises(RuntimeError, match='DeepClusterHook'):
        model.loss(torch.randn(2, 3, 32, 32), _samples([0, 1]))
    with pytest.raises(ValueError, match='got 9 labels for num_samples=10'):
        model.set_pseudo_labels(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r'\[0, 4\)'):
        model.set_pseudo_labels(torch.full((10, ), 4))
    model.set_pseudo_labels(torch.arange(10) % 4)
    with pytest.raises(IndexError, match='dataset index 10'):
        model.loss(torch.randn(2, 3, 32, 32), _samples([0, 10]))


def test_k_greater_than_n_is_a_clear_error():
    with pytest.raises(ValueError, match=r'K=12 clusters .* > N=10 samples'):
        _tiny_model(num_samples=10, k=12)
    from mmssl_ext.clustering import kmeans
    with pytest.raises(ValueError, match='k=5 clusters from 4 samples'):
        kmeans(np.random.rand(4, 3).astype(np.float32), 5, gpu=False)


def test_reinit_head_draws_new_small_weights_and_zero_bias():
    torch.manual_seed(0)
    model = _tiny_model(k=4, width=16)
    with torch.no_grad():
        model.head.fc.weight.fill_(1.0)
        model.head.fc.bias.fill_(1.0)
    params = model.reinit_head()
    assert {id(p) for p in params} == {id(p) for p in model.head.parameters()}
    w = model.head.fc.weight
    assert torch.equal(model.head.fc.bias, torch.zeros(4))
    assert 0.005 < float(w.std()) < 0.015 and abs(float(w.mean())) < 0.005
    # the backbone is left alone
    before = model.backbone.conv1.weight.clone()
    model.reinit_head()
    assert torch.equal(before, model.backbone.conv1.weight)


def test_sobel_preprocessor_matches_a_direct_convolution():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pre = MODELS.build(dict(type='SobelDataPreprocessor', mean=[10., 20., 30.],
                                std=[2., 3., 4.], to_rgb=True))
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (2, 3, 6, 5), generator=g, dtype=torch.uint8)
    out = pre(dict(inputs=img, data_samples=None), False)['inputs']
    assert out.shape == (2, 2, 6, 5)
    # reference: BGR -> RGB, normalise, grey = channel mean, zero padding, 3x3 cross-correlation
    x = img.numpy()[:, ::-1].astype(np.float64)
    x = (x - np.array([10., 20., 30.])[:, None, None]) / np.array([2., 3., 4.])[:, None, None]
    gray = np.pad(x.mean(1), ((0, 0), (1, 1), (1, 1)))
    kx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
    ref = np.zeros((2, 2, 6, 5))
    for c, k in enumerate((kx, kx.T)):
        for i in range(6):
            for j in range(5):
                ref[:, c, i, j] = (gray[:, i:i + 3, j:j + 3] * k).sum((1, 2))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-4)


def test_in1k_config_builds_with_sobel_input():
    cfg = Config.fromfile(DC_IN1K_CFG)
    assert cfg.model.backbone.in_channels == 2 and cfg.model.head.num_classes == 10000
    assert cfg.train_dataloader.sampler.type == 'ClusterUniformSampler'
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(depth=18, norm_cfg=dict(type='BN'))
    model_cfg.head.update(num_classes=3, in_channels=512)
    model_cfg.num_samples = 4
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    data = model.data_preprocessor(
        dict(inputs=torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8),
             data_samples=_samples([0, 1])), True)
    model.set_pseudo_labels(torch.tensor([0, 1, 2, 0]))
    out = model.loss(data['inputs'], data['data_samples'])
    assert data['inputs'].shape[1] == 2 and torch.isfinite(out['loss'])


# ---------------------------------------------------------------------------- sampler


class _Data:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def _sampler(n, labels=None, seed=0, rank=0, world_size=1, monkeypatch=None, **kw):
    monkeypatch.setattr(samplers_mod, 'get_dist_info', lambda: (rank, world_size))
    s = ClusterUniformSampler(_Data(n), seed=seed, **kw)
    if labels is not None:
        s.set_labels(labels)
    return s


def test_sampler_draws_uniformly_over_clusters(monkeypatch):
    # very unbalanced clusters: 40, 6, 3, 1 members, cluster 4 empty
    labels = torch.tensor([0] * 40 + [1] * 6 + [2] * 3 + [3] * 1)
    s = _sampler(50, labels, monkeypatch=monkeypatch)
    idx = list(s)
    assert len(idx) == len(s) == 50
    counts = np.bincount(labels[idx].numpy(), minlength=5)
    assert counts[4] == 0 and counts[:4].max() - counts[:4].min() <= 1  # 12 or 13 each
    assert counts[:4].sum() == 50
    # small clusters: every member is drawn, as evenly as possible
    per_sample = np.bincount(idx, minlength=50)
    for members in (range(40, 46), range(46, 49)):
        m = per_sample[list(members)]
        assert m.min() >= 1 and m.max() - m.min() <= 1
    # a large cluster contributes distinct members (no member twice before all once)
    assert per_sample[:40].max() == 1
    # deterministic per epoch, different across epochs
    assert list(s) == idx
    s.set_epoch(1)
    assert list(s) != idx
    # the plain sampler as long as no labels are set: a permutation
    plain = _sampler(50, monkeypatch=monkeypatch)
    assert sorted(plain) == list(range(50))


def test_sampler_shards_over_two_ranks(monkeypatch):
    labels = torch.tensor([0] * 15 + [1] * 4 + [2] * 2)  # N = 21, odd: padding to 22
    shards = []
    for rank in range(2):
        s = _sampler(21, labels, seed=3, rank=rank, world_size=2, monkeypatch=monkeypatch)
        s.set_epoch(5)
        shards.append(list(s))
        assert len(s) == 11
    full = _sampler(21, labels, seed=3, rank=0, world_size=2, monkeypatch=monkeypatch)
    full.set_epoch(5)
    glob = full.global_indices().tolist()
    assert len(glob) == 22
    assert shards[0] == glob[0::2] and shards[1] == glob[1::2]
    counts = np.bincount(labels[shards[0] + shards[1]].numpy(), minlength=3)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 22


def test_sampler_rejects_bad_labels(monkeypatch):
    s = _sampler(5, monkeypatch=monkeypatch)
    with pytest.raises(ValueError, match='got 4 labels for a dataset of 5'):
        s.set_labels([0, 1, 0, 1])
    with pytest.raises(ValueError, match='sample 2 has label -1'):
        s.set_labels([0, 1, -1, 1, 0])


# ---------------------------------------------------------------------------- training runs


def _tiny_opts(tree, n=12, k=3):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'train_dataloader.dataset.indices={n}', f'model.num_samples={n}',
            f'model.head.num_classes={k}', 'custom_hooks.0.pca_dim=8',
            'custom_hooks.0.num_workers=0', 'custom_hooks.0.batch_size=8']


def test_fmnist_config_trains_through_tools_train(tiny_tree, tmp_path):
    work = str(tmp_path / 'dc')
    runner = train_api.main([DC_FMNIST_CFG, '--work-dir', work, '--cfg-options',
                             *_tiny_opts(tiny_tree), 'train_cfg.max_iters=7',
                             'default_hooks.checkpoint.interval=7',
                             'default_hooks.logger.interval=1'])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 7 and np.isfinite(losses).all()
    hook = [h for h in runner.hooks if type(h).__name__ == 'DeepClusterHook'][0]
    assert hook.clustered_epochs == [0, 1, 2]  # before training, after iterations 3 and 6
    labels = runner.model.pseudo_labels
    assert labels.min() >= 0 and labels.max() < 3
    assert torch.equal(runner.train_dataloader.sampler.labels, labels)
    ckpt = torch.load(f'{work}/iter_7.pth', map_location='cpu', weights_only=False)
    assert torch.equal(ckpt['state_dict']['pseudo_labels'], labels)


def test_hook_requires_matching_num_samples(tiny_tree, tmp_path):
    opts = _tiny_opts(tiny_tree) + ['model.num_samples=13', 'train_cfg.max_iters=1']
    with pytest.raises(ValueError, match=r'model.num_samples=13 .* N=12 samples'):
        train_api.main([DC_FMNIST_CFG, '--work-dir', str(tmp_path), '--cfg-options', *opts])


@pytest.mark.parametrize('n', [12, 16], ids=['boundary', 'mid_epoch'])
def test_deepcluster_exact_resume(tiny_tree, tmp_path, n):
    """12 images / batch 4 = 3 iterations per epoch: the interruption (after iteration 3) is the
    epoch boundary, where the hook re-clusters before the checkpoint; 16 images: the run stops
    mid-epoch and re-clusters after the resume (iteration 4).  Pseudo labels, head, sampler."""
    controls = ('before_advance', ) if n == 12 else ('none', 'before_advance')
    _check_exact_resume(DC_FMNIST_CFG, _tiny_opts(tiny_tree, n=n) + _COMMON, tmp_path,
                        buffers=['pseudo_labels'], controls=controls)
