"""PIRL's loss value and bank update, recomputed independently from one forward.

One step of a small PIRL: the returned loss must equal
``lambda * L(m_I, g(v_It)) + (1 - lambda) * L(m_I, f(v_I))`` computed here from the bank as it was
before the step and the negatives the step drew (NCE and InfoNCE written out below, in float64),
and the bank rows of the batch must afterwards equal ``normalize(mu * m_I + (1 - mu) * f(v_I))``.
Two faulty variants (the bank updated with ``g(v_It)``, the bank updated before the loss) must
fail the same check.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.registry import MODELS
from tests.helpers import REPO

PIRL_FMNIST_CFG = f'{REPO}/configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py'
BANK_LEN, NUM_NEG, TAU, LAMBDA, MU = 20, 8, 0.07, 0.3, 0.5
IDX = (3, 7, 11, 19)


def _pirl(loss, sampling, shared_negatives):
    cfg = Config.fromfile(PIRL_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(stem_channels=16, base_channels=16)
    model_cfg.neck.in_channels = model_cfg.transform_neck.in_channels = 128
    model_cfg.memory_bank.update(length=BANK_LEN, num_negatives=NUM_NEG, sampling=sampling,
                                 momentum=MU)
    model_cfg.loss = dict(type=loss, temperature=TAU)
    model_cfg.update(loss_lambda=LAMBDA, shared_negatives=shared_negatives)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model.train()


def _batch():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(len(IDX), 3, 32, 32, generator=g) * 255
    patches = torch.rand(len(IDX), 9, 3, 16, 16, generator=g) * 255
    return [img, patches], [DataSample(metainfo=dict(sample_idx=i)) for i in IDX]


def _spy(model):
    """Record f(v_I), g(v_It) and every draw of negative indices of the next step."""
    seen = dict(f=[], g=[], neg_idx=[])
    embed_image, embed_transformed = model.embed_image, model.embed_transformed
    sample_indices = model.memory_bank.sample_indices

    def spy_image(x):
        out = embed_image(x)
        seen['f'].append(out.detach().double().clone())
        return out

    def spy_transformed(x):
        out = embed_transformed(x)
        seen['g'].append(out.detach().double().clone())
        return out

    def spy_indices(idx):
        out = sample_indices(idx)
        seen['neg_idx'].append(out.clone())
        return out

    model.embed_image, model.embed_transformed = spy_image, spy_transformed
    model.memory_bank.sample_indices = spy_indices
    return seen


def _similarities(v, m_pos, negatives):
    """s+ (B,) and s- (B, K) for shared (K, D) or per-sample (B, K, D) negatives."""
    pos = (v * m_pos).sum(1)
    neg = v @ negatives.t() if negatives.ndim == 2 else torch.einsum('bd,bkd->bk', v, negatives)
    return pos, neg


def _info_nce(pos, neg, state):
    """-mean_b log( exp(s+/tau) / (exp(s+/tau) + sum_k exp(s-_k/tau)) )"""
    num = torch.exp(pos / TAU)
    return -(torch.log(num / (num + torch.exp(neg / TAU).sum(1)))).mean()


def _nce(pos, neg, state):
    """NPID's binary NCE (lemniscate's NCECriterion): P = exp(s/tau)/Z, Pn = 1/N,
    -mean_b [log(P+ / (P+ + K Pn + eps)) + sum_k log(K Pn / (P-_k + K Pn + eps))], with
    Z = mean(exp(s/tau)) * N over the first call's B * (K + 1) similarities."""
    k, n, eps = neg.shape[1], BANK_LEN, 1e-7
    if 'z' not in state:
        state['z'] = torch.cat([torch.exp(pos / TAU), torch.exp(neg / TAU).flatten()]).mean() * n
    p_pos, p_neg = torch.exp(pos / TAU) / state['z'], torch.exp(neg / TAU) / state['z']
    pn = k / n
    return -(torch.log(p_pos / (p_pos + pn + eps))
             + torch.log(pn / (p_neg + pn + eps)).sum(1)).mean()


def _check_step(model, loss_name):
    """One step of ``model``; assert loss and bank equal the independent computation."""
    bank0 = model.memory_bank.feats.detach().double().clone()
    seen = _spy(model)
    out = model.loss(*_batch())
    idx = torch.tensor(IDX)
    (f,), (g,) = seen['f'], seen['g']
    draws = seen['neg_idx']
    assert len(draws) == (1 if model.shared_negatives else 2)
    neg_t, neg_i = bank0[draws[0]], bank0[draws[-1]]
    m = bank0[idx]
    criterion, state = dict(NCELoss=_nce, InfoNCELoss=_info_nce)[loss_name], {}
    loss_t = criterion(*_similarities(g, m, neg_t), state)  # the transformed term first
    loss_i = criterion(*_similarities(f, m, neg_i), state)
    expected = LAMBDA * loss_t + (1 - LAMBDA) * loss_i
    torch.testing.assert_close(out['loss'].double(), expected, rtol=1e-5, atol=1e-6,
                               msg=lambda m: f'loss: {m}')
    torch.testing.assert_close(out['nce_transformed'].double(), loss_t, rtol=1e-5, atol=1e-6,
                               msg=lambda m: f'loss: {m}')
    if loss_name == 'NCELoss':
        torch.testing.assert_close(model.nce.z.double(), state['z'], rtol=1e-5, atol=0)
    bank1 = model.memory_bank.feats.detach().double()
    torch.testing.assert_close(bank1[idx], F.normalize(MU * m + (1 - MU) * f, dim=1),
                               rtol=1e-5, atol=1e-6, msg=lambda m: f'bank update: {m}')
    others = torch.ones(BANK_LEN, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(bank1[others], bank0[others])
    return draws


@pytest.mark.parametrize('loss_name', ['NCELoss', 'InfoNCELoss'])
@pytest.mark.parametrize('sampling', ['shared', 'per_sample'])
@pytest.mark.parametrize('shared_negatives', [False, True])
def test_loss_and_bank_update_equal_the_formula(loss_name, sampling, shared_negatives):
    model = _pirl(loss_name, sampling, shared_negatives)
    draws = _check_step(model, loss_name)
    if not shared_negatives:  # VISSL: each term its own draw
        assert not torch.equal(draws[0], draws[1])


def _update_with_g(model):
    """Fault: the bank is updated with g(v_It) instead of f(v_I)."""
    update = model.memory_bank.update
    embed_transformed = model.embed_transformed
    last_g = {}

    def spy_transformed(x):
        last_g['g'] = embed_transformed(x)
        return last_g['g']

    model.embed_transformed = spy_transformed
    model.memory_bank.update = lambda idx, feats: update(idx, last_g['g'].detach())


def _update_before_loss(model):
    """Fault: the bank is updated with f(v_I) before m_I and the negatives are read."""
    get, update = model.memory_bank.get, model.memory_bank.update
    embed_image = model.embed_image
    last_f = {}

    def spy_image(x):
        last_f['f'] = embed_image(x)
        return last_f['f']

    def get_after_update(idx):
        update(idx, last_f['f'].detach())
        return get(idx)

    model.embed_image = spy_image
    model.memory_bank.get = get_after_update
    model.memory_bank.update = lambda idx, feats: None


@pytest.mark.parametrize('loss_name', ['NCELoss', 'InfoNCELoss'])
@pytest.mark.parametrize('fault,caught', [(_update_with_g, 'bank update'),
                                          (_update_before_loss, 'loss')])
def test_the_check_catches_a_wrong_bank_update(loss_name, fault, caught):
    model = _pirl(loss_name, 'shared', False)
    fault(model)
    with pytest.raises(AssertionError, match=f'^{caught}: '):
        _check_step(model, loss_name)


def test_formulas_against_hand_values():
    """The test's own NCE / InfoNCE on one sample with K = 1, against numbers worked by hand."""
    pos, neg = torch.tensor([0.5], dtype=torch.float64), torch.tensor([[0.1]], dtype=torch.float64)
    a, b = math.exp(0.5 / TAU), math.exp(0.1 / TAU)
    assert math.isclose(float(_info_nce(pos, neg, {})), -math.log(a / (a + b)), rel_tol=1e-12)
    z = (a + b) / 2 * BANK_LEN
    pn, eps = 1 / BANK_LEN, 1e-7
    hand = -(math.log((a / z) / (a / z + pn + eps)) + math.log(pn / (b / z + pn + eps)))
    assert math.isclose(float(_nce(pos, neg, {})), hand, rel_tol=1e-12)
