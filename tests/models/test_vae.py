"""Variational auto-encoder: the KL and both likelihoods against closed forms, the ELBO equal to
log p(x) at the exact posterior of a linear-Gaussian model, the reparameterisation, the KL
annealing schedule and its resume, the transferred representation, errors, exact resume."""
import math
import os.path as osp

import numpy as np
import pytest
import torch

import mmssl_ext  # noqa: F401
from mmssl_ext.models.losses.elbo import ELBOLoss, gaussian_kl
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO
from tests.models.test_autoencoders import build_ae

VAE_CFG = osp.join(REPO, 'configs/vae/vae_r18-w32_1xb64-3000it_fmnist.py')


def _rand(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_kl_against_the_closed_form():
    mu, logvar = _rand((3, 4), 0), _rand((3, 4), 1)
    ref = []
    for m_row, lv_row in zip(mu.tolist(), logvar.tolist()):
        # KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1/2, per dimension
        ref.append(sum(-0.5 * lv + (math.exp(lv) + m * m) / 2 - 0.5
                       for m, lv in zip(m_row, lv_row)))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.tensor(ref, dtype=torch.float64))
    assert torch.all(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)) == 0)


def test_likelihoods_against_closed_forms():
    pred, x = _rand((2, 3, 4), 2), torch.rand(2, 3, 4, dtype=torch.float64)
    mu, logvar = _rand((2, 5), 3), _rand((2, 5), 4)
    kl = gaussian_kl(mu, logvar).mean()
    # Gaussian of fixed sigma: -log N(x; pred, sigma^2), summed per image, mean over images
    sigma = 0.7
    nll = (0.5 * np.log(2 * np.pi * sigma ** 2)
           + (x.numpy() - pred.numpy()) ** 2 / (2 * sigma ** 2)).reshape(2, -1).sum(1).mean()
    out = ELBOLoss('gaussian', sigma=sigma)(pred, x, mu, logvar, kl_weight=0.25)
    assert out['loss_recon'].item() == pytest.approx(nll, rel=1e-10)
    assert out['loss_kl'].item() == pytest.approx(0.25 * kl.item(), rel=1e-10)
    assert out['kl'].item() == pytest.approx(kl.item(), rel=1e-10)
    assert out['elbo'].item() == pytest.approx(-(nll + kl.item()), rel=1e-10)
    # Bernoulli with logits pred: -sum [x log p + (1 - x) log(1 - p)], p = sigmoid(pred)
    p = 1 / (1 + np.exp(-pred.numpy()))
    ce = -(x.numpy() * np.log(p) + (1 - x.numpy()) * np.log(1 - p))
    out = ELBOLoss('bernoulli')(pred, x, mu, logvar)
    assert out['loss_recon'].item() == pytest.approx(ce.reshape(2, -1).sum(1).mean(), rel=1e-10)


def test_elbo_is_log_evidence_at_the_exact_posterior():
    """Linear-Gaussian model p(z) = N(0, I), p(x | z) = N(W z, s^2 I): log p(x) is known and the
    posterior is Gaussian; the ELBO (averaged over reparameterised samples) equals log p(x)
    there, and is lower at any other q."""
    torch.manual_seed(0)
    d, j, s = 4, 2, 0.5
    # W with orthogonal columns: W^T W is diagonal, so is the exact posterior's covariance and a
    # diagonal q can equal it
    q, _ = torch.linalg.qr(_rand((d, j), 5))
    w = q * torch.tensor([1.5, 0.7], dtype=torch.float64)
    x = _rand((1, d), 6)
    cov_x = w @ w.T + s ** 2 * torch.eye(d, dtype=torch.float64)
    log_px = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64),
                                                    cov_x).log_prob(x).item()
    cov_z = torch.linalg.inv(torch.eye(j, dtype=torch.float64) + w.T @ w / s ** 2)
    mu_z = (cov_z @ w.T @ x.T / s ** 2).T  # 1 x j
    loss = ELBOLoss('gaussian', sigma=s)

    def mean_elbo(mu, logvar, n=20000):
        z = mu + torch.exp(0.5 * logvar) * torch.randn(n, j, dtype=torch.float64)
        out = loss(z @ w.T, x.expand(n, d), mu.expand(n, j), logvar.expand(n, j))
        return out['elbo'].item()

    logvar_z = torch.log(torch.diagonal(cov_z))[None]
    assert mean_elbo(mu_z, logvar_z) == pytest.approx(log_px, abs=0.02)
    assert mean_elbo(mu_z + 0.5, logvar_z) < log_px - 0.1
    assert mean_elbo(mu_z, logvar_z + 1.0) < log_px - 0.1


def _vae(**kw):
    kw.setdefault('posterior', dict(type='AEGaussianPosterior', latent_dim=3))
    return build_ae('vae', init=True, input_size=16, **kw)


def test_reparameterisation_and_its_gradients():
    model = _vae()
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    torch.manual_seed(0)
    z = model.reparameterize(mu.expand(50000, 2), logvar.expand(50000, 2))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0]), atol=0.03, rtol=0)
    z.sum().backward()
    assert mu.grad.tolist() == [[50000.0, 50000.0]] and logvar.grad.abs().sum() > 0


def test_kl_annealing_schedule_and_state():
    model = _vae(kl_weight=0.8, kl_warmup_iters=4, kl_weight_start=0.2)
    model.train()
    x = torch.rand(2, 3, 16, 16)
    weights = [model.loss([x], None)['kl_weight'].item() for _ in range(6)]
    np.testing.assert_allclose(weights, [0.2, 0.35, 0.5, 0.65, 0.8, 0.8], rtol=1e-6)
    assert int(model.kl_steps) == 6
    # the schedule state is in the checkpoint: a new model loading it continues
    fresh = _vae(kl_weight=0.8, kl_warmup_iters=4, kl_weight_start=0.2)
    fresh.load_state_dict(model.state_dict())
    assert fresh.current_kl_weight() == pytest.approx(0.8)
    fresh.kl_steps.fill_(1)
    assert fresh.current_kl_weight() == pytest.approx(0.35)
    # evaluation passes do not advance it
    model.eval()
    model.loss([x], None)
    assert int(model.kl_steps) == 6
    assert _vae().current_kl_weight() == 1.0  # no annealing: the plain ELBO


def test_representation_posterior_mean_or_backbone():
    model = _vae().eval()
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(model.extract_feat(x)[-1], model.backbone(x)[-1])
    model.representation = 'posterior_mean'
    (mu, ) = model.extract_feat(x)
    ref = model.posterior.mu(model.backbone(x)[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(mu, ref)
    assert model.representation_encoder('backbone')(x)[-1].shape[1] == 64


def test_model_errors():
    with pytest.raises(ValueError, match='representation must be one of'):
        _vae(representation='z')
    with pytest.raises(ValueError, match='kl_warmup_iters must be an int >= 0'):
        _vae(kl_warmup_iters=-1)
    with pytest.raises(ValueError, match='kl_weight and kl_weight_start must be >= 0'):
        _vae(kl_weight=-0.1)
    with pytest.raises(ValueError, match='posterior.latent_dim .* is required'):
        _vae(posterior=dict(type='AEGaussianPosterior'))
    with pytest.raises(ValueError, match='likelihood must be one of'):
        ELBOLoss('laplace')
    with pytest.raises(ValueError, match=r'needs targets in \[0, 1\]'):
        _vae(loss=dict(type='ELBOLoss', likelihood='bernoulli')).loss(
            [torch.randn(2, 3, 16, 16) * 3], None)


def test_exact_resume(tiny_tree, tmp_path):
    """eps of the reparameterisation comes from torch's generator (control 'none': mmengine's
    resume alone does not restore it) and the KL warm-up continues from ``kl_steps``."""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.head.fc_channels=16', 'model.kl_warmup_iters=10', *_COMMON]
    _check_exact_resume(VAE_CFG, opts, tmp_path, buffers=['kl_steps'], controls=('none', ))
