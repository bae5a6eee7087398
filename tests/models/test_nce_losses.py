"""InfoNCELoss and NCELoss against independent references (numpy loops, torch autograd)."""
import math

import numpy as np
import pytest
import torch

import mmssl_ext  # noqa: F401  (registration)
from mmssl_ext.models.losses import InfoNCELoss, NCELoss
from mmssl_ext.registry import MODELS

TAU = 0.07


# ---------------------------------------------------------------- references (plain loops)

def infonce_numpy(pos: np.ndarray, neg: np.ndarray, tau: float) -> float:
    total = 0.0
    for b in range(len(pos)):
        num = math.exp(pos[b] / tau)
        den = num
        for k in range(neg.shape[1]):
            den += math.exp(neg[b, k] / tau)
        total += -math.log(num / den)
    return total / len(pos)


def npid_z_numpy(pos: np.ndarray, neg: np.ndarray, tau: float, num_data: int) -> float:
    total, count = 0.0, 0
    for b in range(len(pos)):
        total += math.exp(pos[b] / tau)
        count += 1
        for k in range(neg.shape[1]):
            total += math.exp(neg[b, k] / tau)
            count += 1
    return total / count * num_data


def nce_numpy(pos: np.ndarray, neg: np.ndarray, tau: float, num_data: int, z: float) -> float:
    k_neg = neg.shape[1]
    pn = 1.0 / num_data
    total = 0.0
    for b in range(len(pos)):
        p = math.exp(pos[b] / tau) / z
        h = p / (p + k_neg * pn)
        loss_b = -math.log(h)
        for k in range(k_neg):
            p = math.exp(neg[b, k] / tau) / z
            h = p / (p + k_neg * pn)
            loss_b -= math.log(1.0 - h)
        total += loss_b
    return total / len(pos)


def nce_torch_reference(pos, neg, tau, num_data, z):
    """The textbook formula in torch (no log-space tricks), for autograd comparisons."""
    k_neg = neg.shape[1]
    pn = 1.0 / num_data
    p_pos = torch.exp(pos / tau) / z
    p_neg = torch.exp(neg / tau) / z
    h_pos = p_pos / (p_pos + k_neg * pn)
    h_neg = p_neg / (p_neg + k_neg * pn)
    return -(torch.log(h_pos) + torch.log(1 - h_neg).sum(1)).mean()


def infonce_torch_reference(pos, neg, tau):
    num = torch.exp(pos / tau)
    den = num + torch.exp(neg / tau).sum(1)
    return -torch.log(num / den).mean()


def _sims(b: int, k: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, generator=g, dtype=dtype) * 2 - 1
    neg = torch.rand(b, k, generator=g, dtype=dtype) * 2 - 1
    return pos, neg


# ---------------------------------------------------------------- InfoNCE

@pytest.mark.parametrize('b,k,tau', [(4, 7, TAU), (1, 1, 0.5), (16, 64, 0.2)])
def test_infonce_matches_numpy_loops(b, k, tau):
    pos, neg = _sims(b, k, seed=b + k)
    got = InfoNCELoss(temperature=tau)(pos, neg)
    assert got.ndim == 0
    assert float(got) == pytest.approx(infonce_numpy(pos.numpy(), neg.numpy(), tau), rel=1e-10)
    got32 = InfoNCELoss(temperature=tau)(pos.float(), neg.float())
    assert float(got32) == pytest.approx(infonce_numpy(pos.numpy(), neg.numpy(), tau), rel=1e-5)


def test_infonce_gradient_matches_autograd_reference():
    pos, neg = _sims(6, 11, seed=1)
    p1, n1 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    p2, n2 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    InfoNCELoss(TAU)(p1, n1).backward()
    infonce_torch_reference(p2, n2, TAU).backward()
    assert torch.allclose(p1.grad, p2.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(n1.grad, n2.grad, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(lambda p, n: InfoNCELoss(TAU)(p, n),
                                    (pos.clone().requires_grad_(), neg.clone().requires_grad_()))


def test_infonce_stable_for_large_logits_and_accepts_column_pos():
    pos = torch.tensor([50.0, -50.0])
    neg = torch.tensor([[49.0, -60.0], [40.0, 30.0]])
    loss = InfoNCELoss(TAU)(pos.unsqueeze(1), neg)
    assert torch.isfinite(loss)
    expected = np.mean([np.logaddexp(0, (49 - 50) / TAU),
                        np.logaddexp.reduce([0, (40 + 50) / TAU, (30 + 50) / TAU])])
    assert float(loss) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- NCE

@pytest.mark.parametrize('b,k,num_data,tau', [(4, 7, 100, TAU), (8, 32, 5000, TAU),
                                              (3, 2, 10, 0.5)])
def test_nce_matches_numpy_loops(b, k, num_data, tau):
    pos, neg = _sims(b, k, seed=k)
    loss_fn = NCELoss(temperature=tau, num_data=num_data)
    got = loss_fn(pos, neg)
    assert float(loss_fn.z) == pytest.approx(
        npid_z_numpy(pos.numpy(), neg.numpy(), tau, num_data), rel=1e-6)
    z = float(loss_fn.z)  # the buffer holds Z in float32: compare with the value the loss uses
    expected = nce_numpy(pos.numpy(), neg.numpy(), tau, num_data, z)
    # eps = 1e-7 in the denominators moves each of the K + 1 logs by at most eps / (K / |D|)
    eps_bound = (k + 1) * 1e-7 * num_data / k
    assert got.ndim == 0
    assert abs(float(got) - expected) <= eps_bound
    got32 = NCELoss(temperature=tau, num_data=num_data)(pos.float(), neg.float())
    assert abs(float(got32) - expected) <= eps_bound + 1e-5 * abs(expected)
    exact = NCELoss(temperature=tau, num_data=num_data, eps=0.0)(pos, neg)
    assert float(exact) != float(got)
    assert float(exact) == pytest.approx(expected, rel=1e-10)


def test_nce_gradient_matches_autograd_reference_and_finite_differences():
    pos, neg = _sims(5, 9, seed=3)
    loss_fn = NCELoss(temperature=TAU, num_data=200, eps=0.0)
    loss_fn(pos, neg)  # fixes Z
    z = float(loss_fn.z)
    p1, n1 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    p2, n2 = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    loss_fn(p1, n1).backward()
    nce_torch_reference(p2, n2, TAU, 200, z).backward()
    assert torch.allclose(p1.grad, p2.grad, rtol=1e-8, atol=1e-12)
    assert torch.allclose(n1.grad, n2.grad, rtol=1e-8, atol=1e-12)
    with_eps = NCELoss(temperature=TAU, num_data=200)
    with_eps.load_state_dict(loss_fn.state_dict())
    assert torch.autograd.gradcheck(lambda p, n: with_eps(p, n),
                                    (pos.clone().requires_grad_(), neg.clone().requires_grad_()))


def test_nce_z_set_on_first_call_and_then_fixed(tmp_path):
    loss_fn = NCELoss(temperature=TAU, num_data=1000)
    assert not loss_fn.z_initialized and 'z' in loss_fn.state_dict()
    pos, neg = _sims(4, 16, seed=0)
    first = loss_fn(pos, neg)
    z1 = float(loss_fn.z)
    assert loss_fn.z_initialized
    assert z1 == pytest.approx(npid_z_numpy(pos.numpy(), neg.numpy(), TAU, 1000), rel=1e-6)
    pos2, neg2 = _sims(6, 16, seed=9)
    pos2 = pos2 * 0.3 + 0.5  # very different statistics
    second = loss_fn(pos2, neg2)
    assert float(loss_fn.z) == z1
    expected = nce_numpy(pos2.numpy(), neg2.numpy(), TAU, 1000, z1)
    assert abs(float(second) - expected) <= 17 * 1e-7 * 1000 / 16  # eps bound, see above
    assert float(first) != float(second)
    # Z travels with the state dict and is not re-estimated after loading
    torch.save(loss_fn.state_dict(), tmp_path / 'loss.pth')
    fresh = NCELoss(temperature=TAU, num_data=1000)
    fresh.load_state_dict(torch.load(tmp_path / 'loss.pth', weights_only=True))
    fresh(pos2 * 0.1, neg2 * 0.1)
    assert float(fresh.z) == z1


@pytest.mark.parametrize('make', [lambda: InfoNCELoss(TAU),
                                  lambda: NCELoss(temperature=TAU, num_data=500)])
def test_loss_decreases_when_positive_similarity_increases(make):
    loss_fn = make()
    _, neg = _sims(3, 20, seed=4)
    neg = neg * 0.5
    values = []
    for s in np.linspace(-0.9, 1.0, 12):
        pos = torch.full((3,), float(s), dtype=torch.float64)
        values.append(float(loss_fn(pos, neg)))
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_loss_increases_when_negative_similarity_increases():
    pos, neg = _sims(3, 20, seed=6)
    for loss_fn in (InfoNCELoss(TAU), NCELoss(temperature=TAU, num_data=500)):
        low = float(loss_fn(pos, neg * 0.5))
        high = float(loss_fn(pos, neg * 0.5 + 0.3))
        assert high > low


def test_shapes_and_errors():
    pos, neg = _sims(4, 5)
    for loss_fn in (InfoNCELoss(), NCELoss(num_data=50)):
        with pytest.raises(ValueError, match='batch sizes differ'):
            loss_fn(pos[:3], neg)
        with pytest.raises(ValueError, match=r'neg must have shape \(B, K\)'):
            loss_fn(pos, neg[:, 0])
        with pytest.raises(ValueError, match=r'pos must have shape \(B,\)'):
            loss_fn(pos.reshape(2, 2), neg)
    with pytest.raises(ValueError, match='temperature'):
        InfoNCELoss(temperature=0)
    with pytest.raises(ValueError, match='temperature'):
        NCELoss(temperature=-1, num_data=10)
    with pytest.raises(TypeError):
        NCELoss(0.07)  # num_data is required
    with pytest.raises(ValueError, match='num_data'):
        NCELoss(num_data=0)


def test_registry_build():
    loss = MODELS.build(dict(type='NCELoss', temperature=0.1, num_data=64))
    assert isinstance(loss, NCELoss) and loss.temperature == 0.1 and loss.num_data == 64
    assert isinstance(MODELS.build(dict(type='InfoNCELoss')), InfoNCELoss)
