"""Colorization: Lab conversion, ab bins, rebalancing, the head's loss, preprocessor, short run."""
import copy
import os

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.models.utils.lab import ABQuantizer, lab_to_rgb, rgb_to_lab
from mmssl_ext.registry import MODELS
from tests.helpers import REPO, free_port, gloo_group

FMNIST_CFG = f'{REPO}/configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py'


@pytest.fixture(scope='module')
def quantizer():
    return ABQuantizer()


def _model(**head):
    cfg = Config.fromfile(FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.head.update(head)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _np_lab(rgb):
    """Reference sRGB -> Lab, pixel by pixel in float64 (N x 3 -> N x 3)."""
    out = []
    m = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                  [0.019334, 0.119193, 0.950227]])
    white = np.array([0.950456, 1.0, 1.088754])
    for px in rgb.astype(np.float64):
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in px]
        xyz = m.dot(lin) / white
        f = [t ** (1 / 3) if t > (6 / 29) ** 3 else t * 841 / 108 + 4 / 29 for t in xyz]
        out.append([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    return np.array(out)


# ---------------------------------------------------------------- Lab
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_rgb_lab_round_trip(dtype, tol):
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 16, 16, generator=g, dtype=dtype)
    rgb[0, :, 0, :8] = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 1, 1],
                                     [0, 1, 0, 1, 0, 1, 0, 1]], dtype=dtype)  # cube corners
    lab = rgb_to_lab(rgb)
    assert lab.dtype == dtype and lab.shape == rgb.shape
    assert (rgb - lab_to_rgb(lab)).abs().max() < tol


def test_rgb_to_lab_matches_references():
    rng = np.random.RandomState(0)
    img = rng.rand(40, 50, 3).astype(np.float32)
    ours = rgb_to_lab(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    # OpenCV's float path (L in [0, 100]) tabulates the gamma curve: agrees to ~0.1 on average
    cv = cv2.cvtColor(img, cv2.COLOR_RGB2Lab)
    diff = np.abs(cv - ours)
    assert diff.max() < 0.6 and diff.mean() < 0.15, (diff.max(), diff.mean())
    # a plain per-pixel float64 reference
    ref = _np_lab(img[:5].reshape(-1, 3)).reshape(5, 50, 3)
    np.testing.assert_allclose(ours[:5], ref, atol=2e-3)


def test_known_lab_values():
    rgb = torch.tensor([[1., 1, 1], [0, 0, 0], [1, 0, 0], [0.5, 0.5, 0.5]]).t()[None, :, :, None]
    lab = rgb_to_lab(rgb.double())[0, :, :, 0].t()
    expected = torch.tensor([[100., 0, 0], [0, 0, 0], [53.24, 80.09, 67.20]], dtype=torch.float64)
    torch.testing.assert_close(lab[:3], expected, atol=0.01, rtol=0)
    assert lab[3, 1:].abs().max() < 1e-6 and 53.3 < lab[3, 0] < 53.5  # grey: neutral, L 53.39


def test_lab_rejects_bad_shapes():
    with pytest.raises(ValueError, match='B x 3 x H x W.*\\(2, 4, 4\\)'):
        rgb_to_lab(torch.rand(2, 4, 4))
    with pytest.raises(TypeError, match='floating point.*uint8'):
        rgb_to_lab(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


# ---------------------------------------------------------------- bins
def test_bins_are_the_occupied_cells_of_the_srgb_gamut(quantizer):
    c = quantizer.centres
    assert quantizer.num_bins == 262 == len(torch.unique(c, dim=0))
    assert (c.remainder(10) == 0).all()
    assert (c == 0).all(1).any()  # the neutral bin
    assert -90 <= c[:, 0].min() and c[:, 0].max() <= 100
    # every colour of a random sRGB sample lies in the cell of some bin
    rgb = torch.rand(1, 3, 200, 100, generator=torch.Generator().manual_seed(1))
    cells = torch.round(rgb_to_lab(rgb)[0, 1:].reshape(2, -1).t() / 10) * 10
    bins = {tuple(x) for x in c.tolist()}
    assert {tuple(x) for x in cells.tolist()} <= bins


def test_each_centre_hard_encodes_to_itself(quantizer):
    ab = quantizer.centres.t().reshape(1, 2, 1, -1)
    assert quantizer.encode_hard(ab).flatten().tolist() == list(range(quantizer.num_bins))


def test_soft_encoding(quantizer):
    g = torch.Generator().manual_seed(0)
    ab = torch.rand(2, 2, 5, 6, generator=g) * 180 - 90
    z = quantizer.encode_soft(ab)
    assert z.shape == (2, quantizer.num_bins, 5, 6)
    torch.testing.assert_close(z.sum(1), torch.ones(2, 5, 6))
    assert ((z > 0).sum(1) == 5).all()
    assert torch.equal(z.argmax(1), quantizer.encode_hard(ab))
    # one pixel against a brute-force computation
    px = ab[1, :, 3, 4].double().numpy()
    cen = quantizer.centres.double().numpy()
    d2 = ((cen - px) ** 2).sum(1)
    near = np.argsort(d2)[:5]
    w = np.exp(-d2[near] / (2 * 5.0 ** 2))
    expected = np.zeros(len(cen))
    expected[near] = w / w.sum()
    np.testing.assert_allclose(z[1, :, 3, 4].double().numpy(), expected, atol=1e-5)


def test_decode_annealed_mean(quantizer):
    q = quantizer.num_bins
    logits = torch.zeros(1, q, 1, 2)
    logits[0, 7, 0, 0] = 30.0                      # confident: the bin centre
    torch.testing.assert_close(quantizer.decode(logits)[0, :, 0, 0], quantizer.centres[7])
    probs = torch.zeros(1, q, 1, 1)
    probs[0, 3], probs[0, 9] = 0.75, 0.25
    c = quantizer.centres
    mean = quantizer.decode(probs, temperature=1.0, from_logits=False)[0, :, 0, 0]
    torch.testing.assert_close(mean, 0.75 * c[3] + 0.25 * c[9])
    annealed = quantizer.decode(probs, temperature=0.5, from_logits=False)[0, :, 0, 0]
    w = torch.tensor([0.75 ** 2, 0.25 ** 2])
    torch.testing.assert_close(annealed, (w[0] * c[3] + w[1] * c[9]) / w.sum())


def _reference_weights(counts, centres, lam=0.5, sigma=5.0):
    p = counts / counts.sum()
    q = len(p)
    smoothed = np.zeros(q)
    for i in range(q):
        for j in range(q):
            smoothed[i] += p[j] * np.exp(-((centres[i] - centres[j]) ** 2).sum() / (2 * sigma ** 2))
    smoothed /= smoothed.sum()
    w = 1.0 / ((1 - lam) * smoothed + lam / q)
    return w / (smoothed * w).sum(), smoothed


def test_rebalance_weights_formula(quantizer):
    rng = np.random.RandomState(0)
    counts = rng.randint(0, 1000, size=quantizer.num_bins).astype(np.float64)
    counts[rng.rand(len(counts)) < 0.7] = 0  # a sparse, peaky prior
    expected, smoothed = _reference_weights(counts, quantizer.centres.double().numpy())
    w = quantizer.rebalance_weights(torch.from_numpy(counts), lam=0.5)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5)
    assert abs((smoothed * w.double().numpy()).sum() - 1) < 1e-5
    # rare bins are weighted up
    assert w[int(np.argmax(smoothed))] < 1 < w[int(np.argmin(smoothed))]


def test_quantizer_rejects_bad_arguments(quantizer):
    with pytest.raises(ValueError, match='num_neighbours.*got 0'):
        ABQuantizer(num_neighbours=0)
    with pytest.raises(ValueError, match='grid_size.*got -1'):
        ABQuantizer(grid_size=-1)
    with pytest.raises(ValueError, match='positive sum'):
        quantizer.rebalance_weights(torch.zeros(quantizer.num_bins))
    with pytest.raises(ValueError, match='lambda.*got 0'):
        quantizer.rebalance_weights(torch.ones(quantizer.num_bins), lam=0)
    with pytest.raises(ValueError, match='B x 2 x H x W.*\\(1, 3, 2, 2\\)'):
        quantizer.encode_hard(torch.zeros(1, 3, 2, 2))


# ---------------------------------------------------------------- head
def _tiny_head(**kw):
    args = dict(type='ColorizationHead', in_channels=(8, 16), channels=8, min_prior_pixels=0)
    args.update(kw)
    head = MODELS.build(args)
    head.init_weights()
    return head


def _feats_and_ab(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = (torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 16, 2, 2, generator=g))
    lab = rgb_to_lab(torch.rand(2, 3, 16, 16, generator=g))
    return feats, lab[:, 1:]


def test_head_loss_matches_reference():
    head = _tiny_head()
    head.train()
    feats, ab = _feats_and_ab()
    out = head.loss(feats, ab)
    assert set(out) == {'loss', 'accuracy'} and not out['accuracy'].requires_grad

    # reference, written with plain torch / numpy: 4x4 area pooling, soft + hard targets,
    # online prior = this batch's histogram, rebalanced soft cross-entropy averaged over pixels
    centres = head.quantizer.centres.double()
    ab_small = ab.double().reshape(2, 2, 4, 4, 4, 4).mean(dim=(3, 5))
    px = ab_small.permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = ((px[:, None, :] - centres[None]) ** 2).sum(-1)
    hard = d2.argmin(1)
    soft = torch.zeros_like(d2)
    for i in range(len(px)):
        near = d2[i].argsort()[:5]
        w = torch.exp(-d2[i, near] / 50.0)
        soft[i, near] = w / w.sum()
    counts = torch.bincount(hard, minlength=head.num_bins).double().numpy()
    weights, _ = _reference_weights(counts, centres.numpy())
    with torch.no_grad():
        logits = head(feats, (4, 4)).double().permute(0, 2, 3, 1).reshape(-1, head.num_bins)
    ce = -(soft * torch.log_softmax(logits, 1)).sum(1)
    expected = (torch.from_numpy(weights)[hard] * ce).mean()
    torch.testing.assert_close(out['loss'].double(), expected, rtol=1e-4, atol=1e-5)
    accuracy = (logits.argmax(1) == hard).double().mean()
    torch.testing.assert_close(out['accuracy'].double(), accuracy)
    assert torch.equal(head.bin_counts, torch.bincount(hard, minlength=head.num_bins))


def test_head_prior_buffer_updates_and_round_trips():
    head = _tiny_head(min_prior_pixels=10 ** 9)
    feats, ab = _feats_and_ab()
    head.eval()
    head.loss(feats, ab)
    assert head.bin_counts.sum() == 0  # evaluation does not count
    assert torch.equal(head.class_weights(), torch.ones(head.num_bins))  # warm-up: uniform
    head.train()
    head.loss(feats, ab)
    head.loss(feats, ab)
    assert head.bin_counts.sum() == 2 * 2 * 4 * 4
    state = head.state_dict()
    assert state['bin_counts'].dtype == torch.long
    assert not any(k.startswith('quantizer.') for k in state)  # derived buffers not saved
    fresh = _tiny_head()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.bin_counts, head.bin_counts)


def test_head_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fuse must be 'sum' or 'concat', got 'max'"):
        _tiny_head(fuse='max')
    with pytest.raises(ValueError, match='rebalance_lambda.*got 1.5'):
        _tiny_head(rebalance_lambda=1.5)
    head = _tiny_head()
    feats, ab = _feats_and_ab()
    with pytest.raises(ValueError, match='expects 2 backbone outputs.*got 1'):
        head.loss(feats[1:], ab)
    with pytest.raises(ValueError, match='B x 2 x H x W, got \\(2, 3, 16, 16\\)'):
        head.loss(feats, torch.zeros(2, 3, 16, 16))


def test_concat_fusion_runs():
    head = _tiny_head(fuse='concat')
    feats, ab = _feats_and_ab()
    assert torch.isfinite(head.loss(feats, ab)['loss'])


# ---------------------------------------------------------------- preprocessor and algorithm
def _uint8_batch(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def test_preprocessor_modes_and_bgr_handling():
    pre = MODELS.build(dict(type='ColorizationDataPreprocessor'))
    bgr = _uint8_batch()
    test = pre(dict(inputs=bgr, data_samples=None), False)['inputs']
    assert isinstance(test, torch.Tensor) and test.shape == (2, 1, 32, 32)
    lightness, ab = pre(dict(inputs=bgr, data_samples=None), True)['inputs']
    assert torch.equal(lightness, test) and ab.shape == (2, 2, 32, 32)
    # reference: OpenCV on the BGR image (as LoadImageFromFile gives it)
    img = bgr[1].permute(1, 2, 0).numpy().astype(np.float32) / 255
    ref = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)
    assert np.abs((test[1, 0].numpy() * 50 + 50) - ref[..., 0]).max() < 0.6
    assert np.abs(ab[1].permute(1, 2, 0).numpy() - ref[..., 1:]).max() < 0.6
    assert -1 <= test.min() and test.max() <= 1
    # RGB input with to_rgb=False gives the same; gray 1-channel input gives ab = 0
    rgb_pre = MODELS.build(dict(type='ColorizationDataPreprocessor', to_rgb=False))
    torch.testing.assert_close(rgb_pre(dict(inputs=bgr.flip(1)), False)['inputs'], test)
    _, gray_ab = pre(dict(inputs=bgr[:, :1]), True)['inputs']
    assert gray_ab.abs().max() < 1e-3


def test_preprocessor_rejects_bad_input():
    pre = MODELS.build(dict(type='ColorizationDataPreprocessor'))
    with pytest.raises(ValueError, match='one image view per sample.*list'):
        pre(dict(inputs=[_uint8_batch(), _uint8_batch()]), True)
    with pytest.raises(ValueError, match='B x 3 \\(or 1\\) x H x W.*\\(2, 4, 8, 8\\)'):
        pre(dict(inputs=torch.zeros(2, 4, 8, 8, dtype=torch.uint8)), False)


def test_forward_backward_reaches_conv1():
    torch.manual_seed(0)
    model = _model(min_prior_pixels=0)
    model.train()
    data = model.data_preprocessor(dict(inputs=_uint8_batch(4), data_samples=None), True)
    out = model(**data, mode='loss')
    assert set(out) == {'loss', 'accuracy'} and torch.isfinite(out['loss'])
    out['loss'].backward()
    grad = model.backbone.conv1.weight.grad
    assert model.backbone.conv1.weight.shape[1] == 1
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.head.bin_counts.sum() == 4 * 8 * 8
    assert model.colorize(data['inputs'][0]).shape == (4, 2, 32, 32)


def test_algorithm_rejects_rgb_backbone_and_single_input():
    cfg = Config.fromfile(FMNIST_CFG)
    bad = copy.deepcopy(cfg.model)
    bad.backbone.in_channels = 3
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(ValueError, match='in_channels=1 \\(got 3\\)'):
            MODELS.build(bad)
    model = _model()
    with pytest.raises(ValueError, match='inputs=\\[L, ab\\]'):
        model.loss(torch.zeros(2, 1, 32, 32), None)


def test_features_for_knn_from_the_config():
    """extract_features (kNN tool / hook / layer probe path) works with the config unchanged."""
    from mmengine.dataset import default_collate
    from mmssl_ext.evaluation.features import extract_features
    model = _model()
    items = [dict(inputs=img, data_samples=DataSample().set_gt_label(i % 3))
             for i, img in enumerate(_uint8_batch(6))]
    loader = [default_collate(items[:4]), default_collate(items[4:])]

    class _Loader(list):
        dataset = items

    feats, labels = extract_features(model, _Loader(loader), progress=False)
    assert feats.shape == (6, 256) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.isfinite(feats).all()


def test_fmnist_config_trains_through_tools_train(tiny_tree, tmp_path):
    work = str(tmp_path / 'colorization')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1']
    runner = train_api.main([FMNIST_CFG, '--work-dir', work, '--cfg-options', *opts])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 2 and np.isfinite(losses).all()
    ckpt = torch.load(f'{work}/iter_2.pth', map_location='cpu')
    counts = ckpt['state_dict']['head.bin_counts']
    assert int(counts.sum()) == 2 * 4 * 8 * 8
    # Fashion-MNIST is gray: every target is the neutral bin
    neutral = int((runner.model.head.quantizer.centres == 0).all(1).nonzero())
    assert int(counts[neutral]) == int(counts.sum())


# ---------------------------------------------------------------- DDP
def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, port, 2):
        torch.manual_seed(0)
        head = _tiny_head()
        head.train()
        feats, ab = _feats_and_ab(seed=10 + rank)  # different data on each rank
        out = head.loss(feats, ab)
        torch.save(dict(counts=head.bin_counts.clone(), weights=head.class_weights(),
                        loss=out['loss'].detach()), os.path.join(out_dir, f'rank{rank}.pth'))


def test_prior_is_summed_over_ranks(tmp_path):
    """Under DDP (2 gloo processes) every rank counts the targets of both ranks' batches."""
    import torch.multiprocessing as mp
    port = free_port()
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(2))
    expected = torch.zeros(ABQuantizer().num_bins, dtype=torch.long)
    for rank in range(2):
        _, ab = _feats_and_ab(seed=10 + rank)
        head = _tiny_head()
        expected += torch.bincount(head.targets(ab)[2].flatten(), minlength=head.num_bins)
    assert torch.equal(r0['counts'], expected) and torch.equal(r1['counts'], expected)
    torch.testing.assert_close(r0['weights'], r1['weights'])
    assert not torch.equal(r0['loss'], r1['loss'])  # the data (and so the loss) differ
