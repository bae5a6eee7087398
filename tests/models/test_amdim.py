"""AMDIM: the NCE critic and its score penalty against loops, the model's pairs of layers and
views against the same loop, bad configurations, exact resume through tools/train.py (with the
collapse monitor and the online kNN hook), and the negatives gathered over 2 gloo ranks."""
import json
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.registry import DefaultScope

import mmssl_ext  # noqa: F401
from mmssl_ext.models.losses.amdim_nce import AMDIMNCELoss
from mmssl_ext.registry import MODELS
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO, free_port, gloo_group

FMNIST_CFG = osp.join(REPO, 'configs/amdim/amdim_r18-w32_1xb64-3000it_fmnist.py')


def _reference_nce(src, trg, pos, tclip, score_reg):
    """Written out per source and location (float64): the positive is the own image's score at
    that location; the negatives are every location of every other image."""
    src, trg = src.double().numpy(), trg.double().numpy()
    n, (m, l, d) = len(src), trg.shape
    raw = [[[float(src[i] @ trg[j, k]) / math.sqrt(d) for k in range(l)] for j in range(m)]
           for i in range(n)]
    reg = score_reg * sum(v * v for row in raw for col in row for v in col) / (n * m * l)

    def clip(v):
        return v if tclip is None else tclip * math.tanh(v / tclip)

    total = 0.0
    for i in range(n):
        negs = [clip(raw[i][j][k]) for j in range(m) if j != pos[i] for k in range(l)]
        for k in range(l):
            p = clip(raw[i][pos[i]][k])
            top = max([p] + negs)
            log_den = top + math.log(sum(math.exp(v - top) for v in [p] + negs))
            total += -(p - log_den)
    return total / (n * l), reg


def _rand(*shape, seed, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('tclip', [20.0, 1.5, None])
def test_nce_and_score_penalty_match_loops(tclip):
    src, trg = _rand(3, 6, seed=0, scale=3.0), _rand(4, 5, 6, seed=1, scale=3.0)
    pos = [2, 0, 3]
    nce, reg = AMDIMNCELoss(tclip=tclip, score_reg=0.05)(src, trg, torch.tensor(pos))
    ref_nce, ref_reg = _reference_nce(src, trg, pos, tclip, 0.05)
    assert float(nce) == pytest.approx(ref_nce, rel=1e-5)
    assert float(reg) == pytest.approx(ref_reg, rel=1e-5)
    # a wrong positive index changes the value
    wrong, _ = AMDIMNCELoss(tclip=tclip)(src, trg, torch.tensor([2, 1, 3]))
    assert abs(float(wrong) - ref_nce) > 1e-2


def test_clipping_bounds_the_scores_and_the_penalty_sees_them_unclipped():
    src, trg = _rand(2, 4, seed=2, scale=40.0), _rand(3, 2, 4, seed=3, scale=40.0)
    loss = AMDIMNCELoss(tclip=2.0)
    raw = loss.raw_scores(src, trg)
    assert raw.abs().max() > 10  # far outside the clip range
    nce, reg = loss(src, trg, torch.tensor([0, 1]))
    # every clipped score is in (-2, 2): each log-softmax is above -log(1 + 5 e^4 / e^-2)
    assert 0 < float(nce) < math.log(1 + 5 * math.exp(4))
    assert float(reg) == pytest.approx(0.05 * float(raw.pow(2).mean()), rel=1e-6)


def _tiny_model(**kw):
    cfg = dict(type='AMDIM',
               backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8,
                             out_indices=(0, 1, 3)),
               neck=dict(type='AMDIMEmbeddingNeck', out_channels=16))
    cfg.update(kw)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def test_model_pairs_layers_and_views_like_the_reference():
    torch.manual_seed(0)
    model = _tiny_model()
    assert model.neck.in_channels == (8, 16, 64)  # read from the backbone
    model.eval()  # BatchNorm on running statistics: the embeddings below are the loss's
    views = [_rand(4, 3, 32, 32, seed=4), _rand(4, 3, 32, 32, seed=5)]
    (r7a, r5a, r1a), (r7b, r5b, r1b) = (model.embed(v) for v in views)
    assert r7a.shape == (4, 16, 8, 8) and r5a.shape == (4, 16, 4, 4) and r1a.shape == (4, 16)
    torch.manual_seed(1)
    out = model.loss(views, [None] * 4)
    torch.manual_seed(1)  # the loss draws one 5x5-role location per image, view a then b
    loc_a, loc_b = torch.randint(0, 16, (4, )), torch.randint(0, 16, (4, ))

    def maps(r):
        return r.detach().flatten(2).transpose(1, 2)  # B x hw x D

    def src5(r, loc):
        return maps(r)[torch.arange(4), loc]

    pos = [0, 1, 2, 3]
    refs = {}
    for name, pairs in (('1t5', [(r1a, r5b), (r1b, r5a)]), ('1t7', [(r1a, r7b), (r1b, r7a)]),
                        ('5t5', [(src5(r5a, loc_a), r5b), (src5(r5b, loc_b), r5a)])):
        terms = [_reference_nce(s.detach(), maps(t), pos, 20.0, 0.05) for s, t in pairs]
        refs[name] = terms
        got = float(out[f'loss_{name}'])
        assert got == pytest.approx((terms[0][0] + terms[1][0]) / 2, rel=1e-4), name
    reg = sum(t[1] for terms in refs.values() for t in terms) / 2
    assert float(out['loss_reg']) == pytest.approx(reg, rel=1e-4)
    # every part of the model gets a gradient from the summed loss
    model.train()
    model.zero_grad()
    sum(v for k, v in model.loss(views, [None] * 4).items() if 'loss' in k).backward()
    for name in ('backbone.layer1.0.conv1.weight', 'backbone.layer4.1.conv2.weight',
                 'neck.emb7.shortcut.weight', 'neck.emb5.shortcut.weight',
                 'neck.emb1.branch.2.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match=r'neck.in_channels=\(1, 2, 3\).*\(8, 16, 64\)'):
        _tiny_model(neck=dict(type='AMDIMEmbeddingNeck', in_channels=(1, 2, 3)))
    with pytest.raises(ValueError, match='backbone.out_indices'):
        _tiny_model(backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(3, )))
    with pytest.raises(ValueError, match='tclip must be > 0'):
        AMDIMNCELoss(tclip=0)
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"two views per image, got 1; put dict\(type='Multi"):
        model.loss([torch.zeros(2, 3, 32, 32)], [None] * 2)
    model.eval()  # BatchNorm in training mode would refuse a batch of one first
    with pytest.raises(ValueError, match='need >= 2'):
        model.loss([torch.zeros(1, 3, 32, 32)] * 2, [None])


def _tiny_opts(tree):
    return [f'train_dataloader.dataset.data_root={tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.neck.out_channels=16', *_COMMON]


def test_exact_resume_with_collapse_monitor_and_knn_hook(tiny_tree, tmp_path):
    """tools/train.py's path on the real config, shrunk: bitwise resume (the 5x5-role locations
    are drawn from torch's generator), and the runtime's collapse monitor and an online kNN hook
    log from the AMDIM model."""
    from mmssl_ext.utils.config import load_config
    knn = load_config(FMNIST_CFG).knn_eval
    loaders = {}
    for split in ('train_dataloader', 'val_dataloader'):
        loaders[split] = dict(knn[split], batch_size=8, num_workers=0)
        loaders[split]['dataset'] = dict(knn[split]['dataset'], data_root=tiny_tree)
    # the runtime's hooks listed (a custom_hooks list replaces the merged one), the monitor and
    # the kNN hook at the last iteration (the monitor also before the first)
    extra = dict(custom_hooks=[dict(type='NaNLossCheckHook'), dict(type='RNGStateHook'),
                               dict(type='CollapseMonitorHook', interval=6, num_samples=8),
                               dict(type='KNNEvalHook', interval=6, by_epoch=False, ks=(5, ),
                                    **loaders)])
    _check_exact_resume(FMNIST_CFG, _tiny_opts(tiny_tree), tmp_path, controls=(), extra=extra)
    rows = [json.loads(line) for line in open(
        sorted(p for p in tmp_path.glob('full/*/vis_data/scalars.json'))[0])]
    logged = {k for row in rows for k in row}
    assert {'loss_1t5', 'loss_1t7', 'loss_5t5', 'loss_reg'} <= logged
    assert any(k.startswith('collapse/') for k in logged), sorted(logged)
    assert any('k5' in k for k in logged), sorted(logged)
    # tools/extract_backbone.py: the encoder loads into a plain mmpretrain ResNet
    from mmssl_ext.cli import extract_backbone
    out = str(tmp_path / 'backbone.pth')
    extract_backbone.main([str(tmp_path / 'full' / 'iter_6.pth'), out])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        resnet = MODELS.build(dict(type='ResNet', depth=18, stem_channels=8, base_channels=8))
    resnet.load_state_dict(torch.load(out, weights_only=True)['state_dict'], strict=True)


B = 3  # images per rank


def _fixed_location(fmap):
    """The 5x5-role source of each image at location 5 (the random draw differs per process)."""
    return fmap.flatten(2)[:, :, 5]


def _step(model, views, wrapper=None):
    """The summed loss (forward through ``wrapper`` if given), and each parameter's gradient."""
    out = (wrapper or model)(views, [None] * len(views[0]), mode='loss')
    loss = sum(v for k, v in out.items() if 'loss' in k)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return float(loss), grads


def _global_views():
    return [_rand(2 * B, 3, 32, 32, seed=10), _rand(2 * B, 3, 32, 32, seed=11)]


def _ddp_worker(rank, port, out_dir):
    from torch.nn.parallel import DistributedDataParallel
    with gloo_group(rank, port, 2):
        views = [v[rank * B:(rank + 1) * B] for v in _global_views()]
        torch.manual_seed(0)
        model = _tiny_model().eval()  # BatchNorm on running statistics: none per rank
        model.sample_locations = _fixed_location
        # DDP averages the gradients over the ranks
        out = dict(gathered=_step(model, views, DistributedDataParallel(model)))
        model.gather_negatives = False
        out['per_rank'] = float(sum(v for k, v in model.loss(views, [None] * B).items()
                                    if 'loss' in k))
        torch.save(out, os.path.join(out_dir, f'rank{rank}.pth'))


def test_ddp_negatives_are_gathered_from_all_ranks(tmp_path):
    """2 gloo ranks x 3 images with gathered negatives = one process with 6 images: the mean of
    the ranks' losses and DDP's averaged gradients; per-rank negatives give another loss."""
    mp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=False) for r in range(2)]
    torch.manual_seed(0)
    model = _tiny_model().eval()
    model.sample_locations = _fixed_location
    loss, grads = _step(model, _global_views())
    gathered = [r['gathered'] for r in ranks]
    assert np.mean([g[0] for g in gathered]) == pytest.approx(loss, rel=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(gathered[0][1][name], grad, rtol=1e-4, atol=1e-6)
        assert torch.equal(gathered[0][1][name], gathered[1][1][name])
    per_rank = np.mean([r['per_rank'] for r in ranks])
    assert abs(per_rank - loss) > 1e-2  # 2 negative images per source instead of 5
