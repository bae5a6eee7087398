"""Denoising auto-encoder: the three corruptions and CorruptedPair, the loss's target (the clean
view), a toy reconstruction error driven down, exact resume of the Fashion-MNIST config."""
import os.path as osp

import numpy as np
import pytest
import torch

import mmssl_ext  # noqa: F401
from mmssl_ext.datasets.transforms.corruption import (AdditiveGaussianNoise, CorruptedPair,
                                                      MaskingNoise, SaltAndPepperNoise)
from tests.cli.test_exact_resume import _COMMON, _check_exact_resume
from tests.helpers import REPO
from tests.models.test_autoencoders import build_ae

DAE_CFG = osp.join(REPO, 'configs/dae/dae_r18-w32_1xb64-3000it_fmnist.py')


def _img(h=64, w=64, seed=0):
    return np.random.RandomState(seed).randint(1, 255, (h, w, 3)).astype(np.uint8)


# ------------------------------------------------------------------------------ corruptions
def test_masking_noise_per_pixel_and_per_value():
    img = _img()
    np.random.seed(0)
    out = MaskingNoise(prob=0.3, fill=0.0)(dict(img=img))['img']
    assert out.dtype == np.float32 and out.shape == img.shape
    dropped = (out == 0).all(axis=2)
    # per pixel: a pixel is dropped in every channel or kept in every channel, unchanged
    assert ((out == 0).any(axis=2) == dropped).all()
    assert (out[~dropped] == img[~dropped]).all()
    assert abs(dropped.mean() - 0.3) < 0.05  # 4096 pixels: 4.5 standard deviations
    np.random.seed(0)
    again = MaskingNoise(prob=0.3, fill=0.0)(dict(img=img))['img']
    assert np.array_equal(out, again)  # numpy's global RNG reproduces it
    per_value = MaskingNoise(prob=0.5, fill=7.0, per_channel=True)(dict(img=img))['img']
    hit = per_value == 7.0
    assert hit.any(axis=2).mean() > hit.all(axis=2).mean()  # channels drawn apart
    assert (per_value[~hit] == img[~hit]).all()


def test_additive_gaussian_noise():
    img = np.full((100, 100, 3), 128, np.uint8)
    out = AdditiveGaussianNoise(std=10.0, clip=None)(dict(img=img))['img']
    noise = out - 128.0
    assert abs(noise.mean()) < 0.5 and abs(noise.std() - 10.0) < 0.3
    assert not np.array_equal(noise[..., 0], noise[..., 1])  # per channel by default
    grey = AdditiveGaussianNoise(std=10.0, clip=None, per_channel=False)(dict(img=img))['img']
    assert np.array_equal(grey[..., 0], grey[..., 2])
    clipped = AdditiveGaussianNoise(std=500.0)(dict(img=img))['img']
    assert clipped.min() == 0.0 and clipped.max() == 255.0


def test_salt_and_pepper_noise():
    img = _img(100, 100)
    out = SaltAndPepperNoise(prob=0.4, salt_ratio=0.25, low=0.0, high=255.0)(
        dict(img=img))['img']
    changed = (out != img).any(axis=2)
    noisy = out[changed]
    assert set(np.unique(noisy)) <= {0.0, 255.0}
    assert (noisy == noisy[:, :1]).all()  # whole pixels
    hit = ((out == 0) | (out == 255)).all(axis=2)
    assert abs(hit.mean() - 0.4) < 0.04
    assert abs((out[hit][:, 0] == 255).mean() - 0.25) < 0.05


def test_corrupted_pair_keeps_the_clean_image_first():
    img = _img(8, 8)
    np.random.seed(3)
    res = CorruptedPair([dict(type='MaskingNoise', prob=0.5),
                         dict(type='AdditiveGaussianNoise', std=5.0)])(dict(img=img))
    clean, noisy = res['img']
    assert clean.dtype == noisy.dtype == np.float32
    assert np.array_equal(clean, img.astype(np.float32))
    np.random.seed(3)
    ref = AdditiveGaussianNoise(std=5.0)(MaskingNoise(prob=0.5)(dict(img=img)))['img']
    assert np.array_equal(noisy, ref)  # the corruptions in order, on a copy


def test_corruption_errors():
    with pytest.raises(ValueError, match=r'MaskingNoise: prob must be a probability in \[0, 1\]'):
        MaskingNoise(prob=1.5)
    with pytest.raises(ValueError, match='std must be a number > 0'):
        AdditiveGaussianNoise(std=0)
    with pytest.raises(ValueError, match='clip must have low < high'):
        AdditiveGaussianNoise(clip=(255, 0))
    with pytest.raises(ValueError, match='low must be < high'):
        SaltAndPepperNoise(low=255, high=0)
    with pytest.raises(ValueError, match='corruptions must be a non-empty list'):
        CorruptedPair([])
    with pytest.raises(ValueError, match='must be one numpy image'):
        CorruptedPair([dict(type='MaskingNoise')])(dict(img=[_img(), _img()]))


# ---------------------------------------------------------------------------------- the model
def _dae(**kw):
    return build_ae('dae', init=True, input_size=16, **kw)


def test_loss_reconstructs_the_clean_view_from_the_corrupted_one():
    torch.manual_seed(0)
    model = _dae().eval()  # eval: BatchNorm's running statistics make the passes comparable
    clean, noisy = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = model.loss([clean, noisy], None)['loss']
    with torch.no_grad():
        feat = model.backbone(noisy)[-1].mean(dim=(2, 3))
        pred = model.head(feat).numpy()
    assert loss.item() == pytest.approx(((pred - clean.numpy()) ** 2).mean(), rel=1e-5)
    # the encoder sees only the corrupted view: changing the clean one changes the target only
    other = model.loss([clean + 1, noisy], None)['loss']
    assert other.item() == pytest.approx(((pred - clean.numpy() - 1) ** 2).mean(), rel=1e-5)
    with pytest.raises(ValueError, match=r"two views per sample.*got 1.*CorruptedPair"):
        model.loss([clean], None)


def test_toy_reconstruction_error_goes_down():
    """Eight fixed 16 px images, masked at 30%: ten Adam steps at least halve the squared error
    of reconstructing the clean images from fresh corruptions."""
    torch.manual_seed(0)
    model = _dae()
    model.train()
    yy, xx = torch.meshgrid(torch.arange(16.), torch.arange(16.), indexing='ij')
    images = torch.stack([torch.sigmoid(torch.sin(xx / (1 + k % 4)) * 3 + (k // 4) * (yy - 8))
                          for k in range(8)])[:, None].expand(8, 3, 16, 16).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        noisy = images * (torch.rand(8, 1, 16, 16) > 0.3)
        loss = model.loss([images, noisy], None)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


# --------------------------------------------------------------------------------- resume
def test_exact_resume(tiny_tree, tmp_path):
    """The corruption draws (numpy's RNG in the pipeline) continue exactly.  (The controls that
    show such a comparison can fail: tests/cli/test_exact_resume_pretext.py, test_vae.py.)"""
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
            'model.head.fc_channels=16', *_COMMON]
    _check_exact_resume(DAE_CFG, opts, tmp_path, controls=())
