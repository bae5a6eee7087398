"""NPID: the loss against an independent reference, the bank update, gradients, a short real run
through tools/train.py's path and exact resume of the memory bank."""
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
from mmssl_ext.registry import MODELS
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO

NPID_FMNIST_CFG = f'{REPO}/configs/npid/npid_r18-w32_1xb64-3000it_fmnist.py'
NPID_IN1K_CFG = f'{REPO}/configs/npid/npid_r50_8xb32-200e_in1k.py'
BANK_LEN, NUM_NEG, IDX = 20, 8, (3, 7, 11, 19)


def _tiny_npid(loss='InfoNCELoss', sampling='shared', momentum=0.5):
    cfg = Config.fromfile(NPID_FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.memory_bank.update(length=BANK_LEN, num_negatives=NUM_NEG, sampling=sampling,
                                 momentum=momentum)
    model_cfg.loss = dict(type=loss, temperature=0.07)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    return model


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(len(IDX), 3, 32, 32, generator=g)
    return img, [DataSample(metainfo=dict(sample_idx=i)) for i in IDX]


def _record_negative_indices(model):
    """Wrap the bank's sampler so the test sees which negatives the model drew."""
    drawn = []
    original = model.memory_bank.sample_indices

    def wrapped(idx):
        out = original(idx)
        drawn.append(out.clone())
        return out

    model.memory_bank.sample_indices = wrapped
    return drawn


def _reference_loss(v, bank, neg_idx, loss, t=0.07):
    """The paper's losses written out from scratch (float64), from the embeddings ``v``, the bank
    BEFORE the update and the drawn negative indices."""
    v, bank = v.double(), bank.double()
    idx = torch.tensor(IDX)
    pos = torch.stack([v[b] @ bank[i] for b, i in enumerate(IDX)])
    if neg_idx.ndim == 1:  # shared
        neg = torch.stack([torch.stack([v[b] @ bank[j] for j in neg_idx]) for b in range(len(IDX))])
    else:
        neg = torch.stack([torch.stack([v[b] @ bank[j] for j in neg_idx[b]])
                           for b in range(len(IDX))])
    if neg_idx.ndim == 1:  # shared negatives never include a sample of the batch
        assert not bool(torch.isin(neg_idx, idx).any())
    else:  # per-sample negatives never include the sample's own entry
        assert not bool((neg_idx == idx.unsqueeze(1)).any())
    if loss == 'InfoNCELoss':
        total = 0.0
        for b in range(len(IDX)):
            num = math.exp(pos[b] / t)
            den = num + sum(math.exp(s / t) for s in neg[b].tolist())
            total += -math.log(num / den)
        return total / len(IDX)
    # binary NCE (Wu et al. 2018): Z from this first batch, P_n = 1 / N, K noise samples
    n_data, k, eps = BANK_LEN, neg.shape[1], 1e-7
    z = torch.cat([pos, neg.flatten()]).div(t).exp().mean().item() * n_data
    total = 0.0
    for b in range(len(IDX)):
        p_pos = math.exp(pos[b] / t) / z
        term = math.log(p_pos / (p_pos + k / n_data + eps))
        for s in neg[b].tolist():
            p_neg = math.exp(s / t) / z
            term += math.log((k / n_data) / (p_neg + k / n_data + eps))
        total += -term
    return total / len(IDX)


@pytest.mark.parametrize('loss', ['InfoNCELoss', 'NCELoss'])
@pytest.mark.parametrize('sampling', ['shared', 'per_sample'])
def test_loss_matches_reference_and_bank_update(loss, sampling):
    torch.manual_seed(0)
    model = _tiny_npid(loss=loss, sampling=sampling)
    drawn = _record_negative_indices(model)
    img, samples = _batch()
    bank_before = model.memory_bank.feats.clone()
    with torch.no_grad():  # the same forward (train-mode BN) computed independently
        feat = model.backbone(img)[-1].mean(dim=(2, 3))
        v_ref = F.normalize(feat @ model.neck.fc.weight.t() + model.neck.fc.bias, dim=1)
    out = model.loss(img, samples)
    assert set(out) == {'loss', 'pos_similarity', 'neg_similarity'}
    assert len(drawn) == 1
    neg_idx = drawn[0]
    assert neg_idx.shape == ((NUM_NEG, ) if sampling == 'shared' else (len(IDX), NUM_NEG))
    expected = _reference_loss(v_ref, bank_before, neg_idx, loss)
    assert out['loss'].item() == pytest.approx(expected, rel=1e-4)
    # bank: the batch rows follow m <- normalize(0.5 m + 0.5 v / |v|); the other rows stay
    after = model.memory_bank.feats
    for b, i in enumerate(IDX):
        new = 0.5 * bank_before[i] + 0.5 * v_ref[b] / v_ref[b].norm()
        torch.testing.assert_close(after[i], new / new.norm(), rtol=1e-5, atol=1e-6)
    others = [i for i in range(BANK_LEN) if i not in IDX]
    assert torch.equal(after[others], bank_before[others])
    assert not out['pos_similarity'].requires_grad


def test_gradient_reaches_backbone_not_bank():
    torch.manual_seed(0)
    model = _tiny_npid()
    img, samples = _batch()
    model.loss(img, samples)['loss'].backward()
    for module in (model.backbone, model.neck):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum().item() for g in grads) > 0
    assert model.memory_bank.feats.grad is None and not model.memory_bank.feats.requires_grad


def test_momentum_one_keeps_the_bank_and_list_input_is_accepted():
    torch.manual_seed(0)
    model = _tiny_npid(momentum=1.0)
    img, samples = _batch()
    before = model.memory_bank.feats.clone()
    model.loss([img], samples)  # one view in a list, as a MultiView(num_views=1) pipeline gives
    torch.testing.assert_close(model.memory_bank.feats, before)


def test_bad_inputs_give_clear_errors():
    model = _tiny_npid()
    img, samples = _batch()
    with pytest.raises(ValueError, match='one view per image; got 2 views'):
        model.loss([img, img], samples)
    with pytest.raises(KeyError, match='sample_idx'):
        model.loss(img, [DataSample() for _ in IDX])
    with pytest.raises(ValueError, match='4 images but 3 data samples'):
        model.loss(img, samples[:3])
    with pytest.raises(IndexError, match='dataset index 20'):
        model.loss(img, [DataSample(metainfo=dict(sample_idx=i)) for i in (0, 1, 2, 20)])


def test_in1k_config_is_the_paper_recipe():
    cfg = Config.fromfile(NPID_IN1K_CFG)
    assert cfg.model.type == 'NPID'
    assert cfg.model.memory_bank.num_negatives == 4096
    assert cfg.model.memory_bank.momentum == 0.5
    assert cfg.model.loss == dict(type='NCELoss', temperature=0.07)
    assert cfg.optim_wrapper.optimizer.lr == 0.03
    assert cfg.train_cfg.max_epochs == 200
    assert cfg.train_dataloader.batch_size * 8 == 256


def test_fmnist_config_trains_via_tools_train(tiny_tree, tmp_path):
    """tools/train.py's path on the Fashion-MNIST config shrunk to the tiny tree: the loss goes
    down and the checkpoint holds the bank."""
    work = str(tmp_path / 'npid')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=8',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=None', 'model.memory_bank.length=24',
            'model.memory_bank.num_negatives=16', 'train_cfg.max_iters=30',
            'default_hooks.checkpoint.interval=30', 'default_hooks.logger.interval=1',
            'optim_wrapper.optimizer.lr=0.05']
    runner = train_api.main([NPID_FMNIST_CFG, '--work-dir', work, '--cfg-options', *opts])
    assert type(runner.model).__name__ == 'NPID'
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert losses[-6:].mean() < losses[:6].mean(), losses
    ckpt = load_checkpoint_safe(f'{work}/iter_30.pth')
    bank = ckpt['state_dict']['memory_bank.feats']
    assert bank.shape == (24, 128)
    torch.testing.assert_close(bank.norm(dim=1), torch.ones(24))


def test_npid_exact_resume(tiny_tree, tmp_path):
    """Memory bank (buffer), negatives (torch's generator), augmentations."""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=12', 'model.memory_bank.length=24',
            'model.memory_bank.num_negatives=16', *_COMMON]
    _check_exact_resume(NPID_FMNIST_CFG, opts, tmp_path, buffers=['memory_bank.feats'])
