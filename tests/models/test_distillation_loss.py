"""DistillationKLLoss against an independent numpy reference (value, gradient, T^2 scaling) and
as the loss of mmpretrain's LinearClsHead."""
import numpy as np
import pytest
import torch

from mmssl_ext.models.losses import DistillationKLLoss
from mmssl_ext.registry import MODELS


def _np_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _np_kd(s, p, t):
    """T^2 * mean_b KL(p_b || softmax(s_b / T)), float64, written from the definition."""
    q = _np_softmax(s / t)
    kl = np.zeros(len(s))
    for b in range(len(s)):
        for c in range(s.shape[1]):
            if p[b, c] > 0:
                kl[b] += p[b, c] * (np.log(p[b, c]) - np.log(q[b, c]))
    return t * t * kl.mean(), t * t * kl


def _np_kd_grad(s, p, t, eps=1e-6):
    """Central finite differences of the reference."""
    g = np.zeros_like(s)
    for i in np.ndindex(*s.shape):
        d = np.zeros_like(s)
        d[i] = eps
        g[i] = (_np_kd(s + d, p, t)[0] - _np_kd(s - d, p, t)[0]) / (2 * eps)
    return g


@pytest.mark.parametrize('t', [0.5, 1.0, 4.0])
def test_value_and_gradient_match_reference(t):
    rng = np.random.RandomState(0)
    s = rng.randn(6, 5) * 2
    teacher = rng.randn(6, 5) * 3
    p = _np_softmax(teacher / t)
    p[0] = [0.5, 0.5, 0, 0, 0]  # zero-mass classes (0 log 0 = 0)
    ref, ref_per_sample = _np_kd(s, p, t)

    s_t = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    loss = DistillationKLLoss(temperature=t)(s_t, torch.tensor(p), avg_factor=6)
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(s_t.grad.numpy(), _np_kd_grad(s, p, t), rtol=1e-4, atol=1e-7)
    # closed form of the gradient: T (softmax(s/T) - p) / B
    np.testing.assert_allclose(s_t.grad.numpy(), t * (_np_softmax(s / t) - p) / 6, atol=1e-6)

    per = DistillationKLLoss(temperature=t, reduction='none')(torch.tensor(s), torch.tensor(p))
    np.testing.assert_allclose(per.numpy(), ref_per_sample, rtol=1e-5)
    # raw teacher logits give the same loss as their tempered softmax
    from_logits = DistillationKLLoss(temperature=t, target_type='logits')(
        torch.tensor(s[1:]), torch.tensor(teacher[1:]))
    assert from_logits.item() == pytest.approx(_np_kd(s[1:], p[1:], t)[0], rel=1e-5)


def test_temperature_squared_scaling():
    rng = np.random.RandomState(1)
    s, teacher = rng.randn(4, 3), rng.randn(4, 3)
    for t in (0.5, 2.0, 8.0):
        p = _np_softmax(teacher / t)
        q = _np_softmax(s / t)
        kl = np.mean(np.sum(p * np.log(p / q), axis=1))  # vectorised, without the T^2
        loss = DistillationKLLoss(temperature=t)(torch.tensor(s), torch.tensor(p))
        assert loss.item() == pytest.approx(t * t * kl, rel=1e-9)
    # the T^2 factor makes the gradient independent of T in the high-temperature limit:
    # dL/ds -> (s - t) / (C B) for zero-mean logits (Hinton et al. 2015, section 2.1)
    s0, t0 = s - s.mean(1, keepdims=True), teacher - teacher.mean(1, keepdims=True)
    limit = (s0 - t0) / (3 * 4)
    for t in (100.0, 1000.0):
        s_t = torch.tensor(s0, requires_grad=True)
        DistillationKLLoss(temperature=t)(s_t, torch.tensor(_np_softmax(t0 / t))).backward()
        np.testing.assert_allclose(s_t.grad.numpy(), limit, atol=5 / t)
    # zero when the student reproduces the teacher, positive otherwise
    p = _np_softmax(teacher / 3.0)
    assert DistillationKLLoss(temperature=3.0)(torch.tensor(teacher), torch.tensor(p)).item() \
        == pytest.approx(0.0, abs=1e-6)
    assert DistillationKLLoss(temperature=3.0)(torch.tensor(s), torch.tensor(p)).item() > 0


def test_weights_reductions_and_errors():
    rng = np.random.RandomState(2)
    s, p = torch.tensor(rng.randn(4, 3)), torch.tensor(_np_softmax(rng.randn(4, 3)))
    loss = DistillationKLLoss(temperature=2.0, loss_weight=0.5)
    per = DistillationKLLoss(temperature=2.0, reduction='none')(s, p)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    assert loss(s, p, weight=w).item() == pytest.approx(0.5 * (per * w).mean().item())
    assert loss(s, p, avg_factor=2).item() == pytest.approx(0.5 * per.sum().item() / 2)
    assert loss(s, p, reduction_override='sum').item() == pytest.approx(0.5 * per.sum().item())
    with pytest.raises(ValueError, match=r'hard labels.*SoftLabelDataset'):
        loss(s, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r'soft targets have shape \(4, 5\).*num_classes=5'):
        loss(s, torch.rand(4, 5))
    with pytest.raises(ValueError, match='temperature must be positive'):
        DistillationKLLoss(temperature=0)


def test_as_loss_of_linear_cls_head():
    from mmpretrain.structures import DataSample
    head = MODELS.build(dict(type='LinearClsHead', num_classes=3, in_channels=8,
                             loss=dict(type='DistillationKLLoss', temperature=2.0)))
    feats = (torch.randn(4, 8), )
    probs = torch.softmax(torch.randn(4, 3), dim=1)
    samples = [DataSample().set_gt_label(int(p.argmax())).set_gt_score(p) for p in probs]
    losses = head.loss(feats, samples)
    expected = DistillationKLLoss(temperature=2.0)(head(feats), probs)
    assert losses['loss'].item() == pytest.approx(expected.item(), rel=1e-6)
    losses['loss'].backward()
    assert head.fc.weight.grad is not None
