"""CMC: Lab views, core-view / full-graph objectives against a reference, banks, encoders, runs."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.models.utils.lab import rgb_to_lab
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO

CMC_CFG = f'{REPO}/configs/cmc/cmc_r18-w32_1xb64-3000it_fmnist.py'
LCROPS_CFG = f'{REPO}/configs/cmc/cmc-lcrops_r18-w32_1xb64-3000it_fmnist.py'
IN1K_CFG = f'{REPO}/configs/cmc/cmc_r50_8xb32-240e_in1k.py'
IDX = [3, 7, 11, 19]
LENGTH, NUM_NEG, TAU = 20, 8, 0.07


def _cmc(num_views=2, objective='core', core_view=0, loss='InfoNCELoss', cfg=CMC_CFG):
    """The Fashion-MNIST config's model, shrunk; with 3 views the L, a and b channels."""
    model_cfg = copy.deepcopy(Config.fromfile(cfg).model)
    if num_views == 3:
        model_cfg.data_preprocessor.view_channels = [[0], [1], [2]]
        model_cfg.backbones = [dict(model_cfg.backbones[0], in_channels=1) for _ in range(3)]
    model_cfg.memory_bank.update(length=LENGTH, num_negatives=NUM_NEG)
    model_cfg.loss = dict(type=loss, temperature=TAU)
    model_cfg.update(objective=objective, core_view=core_view)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _uint8_batch(b=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def _samples(idx=IDX):
    return [DataSample(metainfo=dict(sample_idx=i)) for i in idx]


def _grad_norm(module):
    return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)


# ------------------------------------------------------------------ the objective, by reference
def _ref_infonce(anchor, bank, idx, neg_idx):
    """-log softmax of [<a, m[idx_n]>, <a, m[neg_1]>, ...] / tau at the positive, per sample."""
    out = []
    for n in range(anchor.shape[0]):
        logits = [float(anchor[n] @ bank[idx[n]]) / TAU]
        logits += [float(anchor[n] @ bank[k]) / TAU for k in neg_idx]
        m = max(logits)
        log_z = m + math.log(sum(math.exp(v - m) for v in logits))
        out.append(log_z - logits[0])
    return sum(out) / len(out)


def _ref_nce(anchor, bank, idx, neg_idx, num_data, eps=1e-7):
    """NPID's binary NCE with Z estimated from this term's own first batch."""
    k = len(neg_idx)
    pos = [float(anchor[n] @ bank[idx[n]]) for n in range(anchor.shape[0])]
    neg = [[float(anchor[n] @ bank[j]) for j in neg_idx] for n in range(anchor.shape[0])]
    sims = pos + [s for row in neg for s in row]
    z = sum(math.exp(s / TAU) for s in sims) / len(sims) * num_data
    kpn = k / num_data
    total = 0.0
    for n in range(anchor.shape[0]):
        p = math.exp(pos[n] / TAU) / z
        total -= math.log(p / (p + kpn + eps))
        for s in neg[n]:
            q = math.exp(s / TAU) / z
            total -= math.log(kpn / (q + kpn + eps))
    return total / anchor.shape[0]


def _ref_objective(z, banks, idx, neg_idx, objective, core_view, ref_term):
    """L_C = sum_{j != c} L(V_c, V_j) or L_F = sum_{j} sum_{i < j} L(V_i, V_j), with
    L(V_i, V_j) = L^{i,j} + L^{j,i} and L^{i,j} anchored on z_i against bank j."""
    m = len(z)
    if objective == 'core':
        pairs = [(core_view, j) for j in range(m) if j != core_view]
    else:
        pairs = [(i, j) for j in range(m) for i in range(j)]
    total = 0.0
    for i, j in pairs:
        total += ref_term(z[i], banks[j], idx, neg_idx) + ref_term(z[j], banks[i], idx, neg_idx)
    return total, len(pairs)


@pytest.mark.parametrize('loss', ['InfoNCELoss', 'NCELoss'])
@pytest.mark.parametrize('objective,core_view,num_views,num_pairs',
                         [('core', 0, 3, 2), ('core', 2, 3, 2), ('full', 0, 3, 3),
                          ('core', 0, 2, 1), ('full', 0, 2, 1)])
def test_objective_matches_reference(objective, core_view, num_views, num_pairs, loss):
    torch.manual_seed(0)
    model = _cmc(num_views, objective, core_view, loss)
    g = torch.Generator().manual_seed(1)
    z = [F.normalize(torch.randn(4, 128, generator=g, dtype=torch.float64), dim=1)
         for _ in range(num_views)]
    for bank in model.memory_banks:
        bank.feats = bank.feats.double()
    idx = torch.tensor(IDX)
    neg_idx = torch.tensor([0, 1, 2, 5, 5, 13, 17, 18])  # none of the batch
    model.memory_banks[0].sample_indices = lambda _idx: neg_idx
    banks = [b.feats.clone() for b in model.memory_banks]
    terms = model.pair_terms(z, idx)
    assert len(terms) == 2 * num_pairs
    if loss == 'InfoNCELoss':
        ref_term = _ref_infonce
    else:
        def ref_term(a, bank, i, n):
            return _ref_nce(a, bank, i, n, num_data=LENGTH)
    ref, n_pairs = _ref_objective(z, banks, IDX, neg_idx.tolist(), objective, core_view,
                                  ref_term)
    assert n_pairs == num_pairs
    rel = 1e-9 if loss == 'InfoNCELoss' else 1e-6  # NCE keeps Z in a float32 buffer
    assert sum(float(t) for t in terms.values()) == pytest.approx(ref, rel=rel)
    # each directed term alone, too (anchor a against bank b)
    for (a, b), t in terms.items():
        assert float(t) == pytest.approx(ref_term(z[a], banks[b], IDX, neg_idx.tolist()),
                                         rel=rel)


def test_per_sample_negatives_match_reference():
    """The ImageNet config's sampling: K indices per sample (the reference's B x K draw), the
    same indices for every bank; each sample's term uses its own row."""
    torch.manual_seed(0)
    model = _cmc(2, 'core', 0, 'InfoNCELoss')
    for bank in model.memory_banks:
        bank.sampling = 'per_sample'
        bank.feats = bank.feats.double()
    g = torch.Generator().manual_seed(1)
    z = [F.normalize(torch.randn(4, 128, generator=g, dtype=torch.float64), dim=1)
         for _ in range(2)]
    idx = torch.tensor(IDX)
    neg_idx = torch.randint(0, LENGTH, (4, NUM_NEG), generator=g)
    model.memory_banks[0].sample_indices = lambda _idx: neg_idx
    banks = [b.feats.clone() for b in model.memory_banks]
    terms = model.pair_terms(z, idx)
    for (a, b), t in terms.items():
        ref = sum(_ref_infonce(z[a][n:n + 1], banks[b], IDX[n:n + 1], neg_idx[n].tolist())
                  for n in range(4)) / 4
        assert float(t) == pytest.approx(ref, rel=1e-9)
    # a shared draw of the first row would give another value
    shared = _ref_infonce(z[0], banks[1], IDX, neg_idx[0].tolist())
    assert float(terms[(0, 1)]) != pytest.approx(shared, rel=1e-6)


def test_loss_sums_the_terms_and_updates_every_bank():
    torch.manual_seed(0)
    model = _cmc(num_views=3, objective='full')
    model.train()
    before = [b.feats.clone() for b in model.memory_banks]
    data = model.data_preprocessor(dict(inputs=_uint8_batch(), data_samples=_samples()), True)
    assert [v.shape[1] for v in data['inputs']] == [1, 1, 1]
    with torch.no_grad():
        z = model.embed(data['inputs'])  # train mode: batch statistics, as in the loss
        out = model(**data, mode='loss')
    assert set(out) == {'loss', 'nce_0to1', 'nce_1to0', 'nce_0to2', 'nce_2to0', 'nce_1to2',
                        'nce_2to1'}
    torch.testing.assert_close(out['loss'], sum(v for k, v in out.items() if k != 'loss'))
    # m <- normalize(0.5 m + 0.5 z) on the rows of the batch, per view; the others unchanged
    for m, (bank, old) in enumerate(zip(model.memory_banks, before)):
        changed = (bank.feats != old).any(dim=1).nonzero().flatten().tolist()
        assert changed == IDX, f'bank {m}'
        expected = F.normalize(0.5 * old[IDX] + 0.5 * z[m], dim=1)
        torch.testing.assert_close(bank.feats[IDX], expected, rtol=1e-5, atol=1e-6)


def test_each_term_reaches_only_its_anchor_encoder():
    """L^{i,j} anchors z_i against bank j (no gradient into the bank): only encoder i learns."""
    torch.manual_seed(0)
    model = _cmc(num_views=3, objective='full')
    model.train()
    data = model.data_preprocessor(dict(inputs=_uint8_batch(), data_samples=_samples()), True)
    idx = torch.tensor(IDX)
    for (a, b) in [(0, 1), (1, 0), (2, 1)]:
        model.zero_grad(set_to_none=True)
        terms = model.pair_terms(model.embed(data['inputs']), idx)
        terms[(a, b)].backward()
        for m, (backbone, neck) in enumerate(model.encoders):
            live = _grad_norm(backbone) > 0 and _grad_norm(neck) > 0
            assert live == (m == a), f'term {a}->{b}: encoder {m} live={live}'
        assert all(not b.feats.requires_grad for b in model.memory_banks)
    # the whole loss reaches every encoder, each with its own (separate) weights
    model.zero_grad(set_to_none=True)
    model(**data, mode='loss')['loss'].backward()
    assert all(_grad_norm(bb) > 0 and _grad_norm(nk) > 0 for bb, nk in model.encoders)
    params = [set(map(id, bb.parameters())) for bb, _ in model.encoders]
    assert not (params[0] & params[1]) and not (params[1] & params[2])
    assert model.backbone is model.encoders[0][0]
    assert model.backbone.conv1.weight.shape[1] == 1


def test_encoders_are_initialised_independently():
    torch.manual_seed(0)
    model = _cmc(num_views=2, cfg=LCROPS_CFG)  # two 1-channel encoders of the same shape
    w0 = model.backbone.layer1[0].conv1.weight
    w1 = model.view_backbones[0].layer1[0].conv1.weight
    assert not torch.equal(w0, w1)
    # both got the ResNet's Kaiming init (fan_out), not PyTorch's default
    expected = math.sqrt(2.0 / (w0.shape[0] * 9))
    assert abs(float(w1.std()) / expected - 1) < 0.1


# ------------------------------------------------------------------ the data preprocessor
def test_preprocessor_lab_views_and_test_mode():
    pre = MODELS.build(dict(type='CMCDataPreprocessor'))
    bgr = _uint8_batch(2)
    views = pre(dict(inputs=bgr, data_samples=None), True)['inputs']
    assert [tuple(v.shape) for v in views] == [(2, 1, 32, 32), (2, 2, 32, 32)]
    lab = rgb_to_lab(bgr.flip(1).float() / 255)  # reference: RGB order, CMC's normalisation
    torch.testing.assert_close(views[0], (lab[:, :1] - 50) / 50)
    mean = torch.tensor([6.025, -6.6895]).view(1, 2, 1, 1)
    std = torch.tensor([92.208, 101.1675]).view(1, 2, 1, 1)
    torch.testing.assert_close(views[1], (lab[:, 1:] - mean) / std)
    test = pre(dict(inputs=bgr, data_samples=None), False)['inputs']
    assert isinstance(test, torch.Tensor) and torch.equal(test, views[0])
    # gray images (Fashion-MNIST): the ab view is constant (a = b = 0 before normalisation)
    gray = pre(dict(inputs=bgr[:, :1]), True)['inputs'][1]
    torch.testing.assert_close(gray * std + mean, torch.zeros_like(gray), atol=1e-3, rtol=0)


def test_preprocessor_views_from_several_crops():
    pre = MODELS.build(dict(type='CMCDataPreprocessor', view_channels=[[0], [0], [1, 2]],
                            view_inputs=[0, 1, 1], to_rgb=False))
    crops = [_uint8_batch(2, seed=1), _uint8_batch(2, seed=2)]
    views = pre(dict(inputs=crops), True)['inputs']
    lab = [(rgb_to_lab(c.float() / 255) - pre.lab_mean) / pre.lab_std for c in crops]
    torch.testing.assert_close(views[0], lab[0][:, :1])
    torch.testing.assert_close(views[1], lab[1][:, :1])
    torch.testing.assert_close(views[2], lab[1][:, 1:])
    with pytest.raises(ValueError, match='view_inputs=\\(0, 1, 1\\) needs 2 .*got 1'):
        pre(dict(inputs=crops[0]), True)


@pytest.mark.parametrize('kwargs,match', [
    (dict(view_channels=[[0]]), 'at least 2 views'),
    (dict(view_channels=[[0], [3]]), 'got \\[3\\]'),
    (dict(view_channels=[[0], [1, 1]]), 'distinct'),
    (dict(view_inputs=[0]), 'one non-negative input index per view'),
    (dict(lab_std=(1, 0, 1)), 'lab_std'),
])
def test_preprocessor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='CMCDataPreprocessor', **kwargs))


def test_algorithm_rejects_bad_configuration():
    cfg = copy.deepcopy(Config.fromfile(CMC_CFG).model)
    cases = [
        (dict(backbones=cfg.backbones[:1]), 'at least 2'),
        (dict(backbones=[cfg.backbones[0], dict(cfg.backbones[1], in_channels=3)]),
         'view 1 has 2 channel\\(s\\).*in_channels=3'),
        (dict(backbones=cfg.backbones * 2), '4 backbones but the data preprocessor makes 2'),
        (dict(objective='star'), "objective must be one of.*'star'"),
        (dict(core_view=2), 'core_view=2'),
        (dict(neck=[cfg.neck] * 3), '3 neck configs for 2 views'),
    ]
    for change, match in cases:
        bad = copy.deepcopy(cfg)
        bad.update(change)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            with pytest.raises(ValueError, match=match):
                MODELS.build(bad)
    model = _cmc()
    with pytest.raises(ValueError, match='list of 2 views.*got a Tensor'):
        model.loss(torch.zeros(4, 1, 32, 32), _samples())


# ------------------------------------------------------------------ kNN, configs, resume
def test_features_for_knn_come_from_the_l_encoder():
    from mmengine.dataset import default_collate
    from mmssl_ext.evaluation.features import extract_features
    torch.manual_seed(0)
    model = _cmc()
    items = [dict(inputs=img, data_samples=DataSample().set_gt_label(i % 3))
             for i, img in enumerate(_uint8_batch(6))]

    class _Loader(list):
        dataset = items

    loader = _Loader([default_collate(items[:4]), default_collate(items[4:])])
    feats, labels = extract_features(model, loader, progress=False)
    assert feats.shape == (6, 256) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    model.eval()
    with torch.no_grad():
        lightness = model.data_preprocessor(default_collate(items), False)['inputs']
        ref = F.normalize(model.backbone(lightness)[-1].mean(dim=(2, 3)), dim=1)
        both = model.extract_views([lightness, torch.zeros(6, 2, 32, 32)])
    torch.testing.assert_close(feats, ref)
    assert [tuple(f.shape) for f in both] == [(6, 256), (6, 256)]


def test_imagenet_config_builds_two_half_width_resnet50s():
    cfg = Config.fromfile(IN1K_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.memory_bank.update(length=8, num_negatives=4)
    for b in model_cfg.backbones:
        b.norm_cfg = dict(type='BN')  # SyncBN needs a process group
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    # the reference's stem keeps 64 channels; only the stages are at half width
    assert model.backbone.conv1.weight.shape == (64, 1, 7, 7)
    assert model.view_backbones[0].conv1.weight.shape == (64, 2, 7, 7)
    assert model.backbone.layer1[0].conv1.weight.shape == (32, 64, 1, 1)
    assert model.backbone.layer4[-1].conv3.weight.shape[0] == 1024  # half of ResNet-50's 2048
    assert model.neck.fc.weight.shape == (128, 1024)
    assert isinstance(model.losses['0to1'], MODELS.get('InfoNCELoss'))


def _tiny_opts(tree, iters=2):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'model.memory_bank.length=24', 'model.memory_bank.num_negatives=16',
            f'train_cfg.max_iters={iters}', f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1']


@pytest.mark.parametrize('cfg', [CMC_CFG, LCROPS_CFG], ids=['lab', 'lcrops'])
def test_fmnist_config_trains_through_tools_train(tiny_tree, tmp_path, cfg):
    work = str(tmp_path / 'cmc')
    runner = train_api.main([cfg, '--work-dir', work, '--cfg-options', *_tiny_opts(tiny_tree)])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 2 and np.isfinite(losses).all()
    state = torch.load(f'{work}/iter_2.pth', map_location='cpu')['state_dict']
    for m in range(2):
        bank = state[f'memory_banks.{m}.feats']
        assert bank.shape == (24, 128)
        torch.testing.assert_close(bank.norm(dim=1), torch.ones(24))
    assert state['backbone.conv1.weight'].shape[1] == 1


def test_cmc_exact_resume(tiny_tree, tmp_path):
    """Two memory banks (buffers), negatives (torch's generator), the crops' augmentations."""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'model.memory_bank.length=24',
            'model.memory_bank.num_negatives=16', *_COMMON]
    _check_exact_resume(LCROPS_CFG, opts, tmp_path,
                        buffers=['memory_banks.0.feats', 'memory_banks.1.feats'])
