"""Contractive auto-encoder: the penalty's closed form and its deep-encoder estimate against
torch.autograd.functional.jacobian, the model's loss terms, errors, and exact resume."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from torch.autograd.functional import jacobian

import mmssl_ext  # noqa: F401
from mmssl_ext.models.losses.contractive import (ContractivePenalty, code_layer_jacobian_sq,
                                                 input_jacobian_sq)
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO
from tests.models.test_autoencoders import build_ae

CAE_CFG = osp.join(REPO, 'configs/contractive_ae/contractive-ae_r18-w32_1xb64-3000it_fmnist.py')


def _autograd_frobenius_sq(fn, x):
    """``||d fn(x_b) / d x_b||_F^2`` per sample, from the full Jacobian of one sample at a time."""
    return torch.stack([jacobian(fn, x[b:b + 1]).pow(2).sum() for b in range(len(x))])


@pytest.mark.parametrize('activation', ['sigmoid', 'linear'])
def test_code_layer_closed_form_against_autograd(activation):
    torch.manual_seed(0)
    layer = nn.Linear(5, 4).double()
    act = torch.sigmoid if activation == 'sigmoid' else (lambda a: a)
    x = torch.randn(3, 5, dtype=torch.float64)
    code = act(layer(x))
    got = code_layer_jacobian_sq(code, layer.weight, activation)
    ref = _autograd_frobenius_sq(lambda v: act(layer(v)), x)
    torch.testing.assert_close(got, ref)


def _deep_encoder():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 6), nn.Sigmoid()).double()


def test_input_jacobian_exact_and_projection_estimate_against_autograd():
    enc = _deep_encoder()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    code = enc(x)
    ref = _autograd_frobenius_sq(enc, x.detach())
    torch.testing.assert_close(input_jacobian_sq(code, x, exact=True), ref)
    # one projection: exactly u^T J J^T u for the u drawn (same generator state)
    jac = torch.stack([jacobian(enc, x.detach()[b:b + 1])[0, :, 0].flatten(1)
                       for b in range(3)])  # B x J x D
    torch.manual_seed(5)
    one = input_jacobian_sq(code, x, num_projections=1)
    torch.manual_seed(5)
    u = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(one, torch.einsum('bj,bjd->bd', u, jac).pow(2).sum(1))
    # unbiased (E[u u^T] = I): the mean of 500 draws is within 15 % of the exact value (the
    # relative standard deviation is at most sqrt(2 / 500) = 6 %)
    torch.manual_seed(6)
    many = input_jacobian_sq(code, x, num_projections=500, create_graph=False)
    torch.testing.assert_close(many, ref, rtol=0.15, atol=0)
    # differentiable: the penalty trains the encoder
    input_jacobian_sq(code, x, exact=True).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_penalty_module_modes_and_errors():
    enc = _deep_encoder()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    code = enc(x)
    exact = ContractivePenalty('input_exact', loss_weight=0.5)(code, inputs=x)
    ref = _autograd_frobenius_sq(enc, x.detach()).mean()
    torch.testing.assert_close(exact, 0.5 * ref)
    weight = enc[3].weight
    closed = ContractivePenalty('code_layer', loss_weight=1.0)(code, weight=weight)
    torch.testing.assert_close(closed, code_layer_jacobian_sq(code, weight).mean())
    with pytest.raises(ValueError, match='mode must be one of'):
        ContractivePenalty('hutchinson')
    with pytest.raises(ValueError, match='num_projections must be an int >= 1'):
        ContractivePenalty(num_projections=0)
    with pytest.raises(ValueError, match='loss_weight must be >= 0'):
        ContractivePenalty(loss_weight=-1)
    with pytest.raises(ValueError, match='require grad'):
        input_jacobian_sq(code, x.detach())
    with pytest.raises(ValueError, match="needs the code layer's weight"):
        ContractivePenalty('code_layer')(code)


def _cae(mode='input'):
    model = build_ae('cae', init=True, input_size=16,
                     code_layer=dict(type='AECodeLayer', code_dim=4),
                     penalty=dict(type='ContractivePenalty', mode=mode, loss_weight=0.1))
    return model.eval()  # eval: BatchNorm does not couple the samples of the batch


def test_model_penalises_the_jacobian_of_the_whole_encoder():
    model = _cae('input_exact')
    x = torch.rand(2, 3, 16, 16)
    losses = model.loss([x], None)
    encoder = (lambda v: model.code_layer(model.pooled(v)))
    ref = _autograd_frobenius_sq(encoder, x).mean()
    assert losses['loss_contractive'].item() == pytest.approx(0.1 * ref.item(), rel=1e-4)
    pred = model.head(encoder(x)).detach()
    assert losses['loss_recon'].item() == pytest.approx(((pred - x) ** 2).mean().item(),
                                                        rel=1e-5)
    # the code-layer mode penalises dh/df only (closed form), not the backbone's Jacobian
    model.penalty = ContractivePenalty('code_layer', loss_weight=0.1)
    code = encoder(x)
    ref_layer = code_layer_jacobian_sq(code, model.code_layer.fc.weight).mean()
    assert model.loss([x], None)['loss_contractive'].item() == \
        pytest.approx(0.1 * ref_layer.item(), rel=1e-5)


def test_model_errors():
    with pytest.raises(ValueError, match='code_layer.code_dim .* is required'):
        build_ae('cae', code_layer=dict(type='AECodeLayer'))
    with pytest.raises(ValueError, match='code_layer.in_channels=3 but the backbone has 64'):
        build_ae('cae', code_layer=dict(type='AECodeLayer', code_dim=4, in_channels=3))


def test_exact_resume(tiny_tree, tmp_path):
    """The projection directions come from torch's generator, restored by the RNG-state hook
    (test_vae.py's control shows that mmengine's resume alone would not)."""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.head.fc_channels=16', 'model.code_layer.code_dim=8', *_COMMON]
    _check_exact_resume(CAE_CFG, opts, tmp_path, controls=())
