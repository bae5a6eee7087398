"""CPC v2: patch grid, causal context network, InfoNCE against a reference, short real run."""
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
from mmssl_ext.models.necks.cpc_context import CPCContextNetwork, RowCausalConv2d
from mmssl_ext.registry import MODELS
from tests.helpers import REPO

CPC_CFG = f'{REPO}/configs/cpc/cpcv2_r18-w32_1xb64-3000it_fmnist.py'
IN1K_CFG = f'{REPO}/configs/cpc/cpcv2_r50_8xb32-200e_in1k.py'


def _cpc(**changes):
    model_cfg = copy.deepcopy(Config.fromfile(CPC_CFG).model)
    model_cfg.update(changes)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def _grad_norm(module):
    return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)


# ------------------------------------------------------------------ the patch grid
@pytest.mark.parametrize('size,p,s,grid', [((32, 32), 8, 4, (7, 7)), ((32, 20), 8, 4, (7, 4)),
                                           ((24, 24), 8, 8, (3, 3)), ((30, 30), 10, 5, (5, 5))])
def test_patch_grid_equals_slicing_by_hand(size, p, s, grid):
    model = _cpc(patch_size=p, patch_stride=s)
    img = torch.randn(2, 3, *size)
    patches = model.extract_patches(img)
    assert patches.shape == (2, *grid, 3, p, p)
    for b in range(2):
        for r in range(grid[0]):
            for c in range(grid[1]):
                assert torch.equal(patches[b, r, c], img[b, :, r * s:r * s + p, c * s:c * s + p])


def test_patch_grid_rejects_sizes_it_does_not_tile():
    model = _cpc()
    with pytest.raises(ValueError, match='side of 30 px is not tiled by patches of 8 px at '
                                         'stride 4'):
        model.extract_patches(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match='side of 6 px'):
        model.extract_patches(torch.zeros(1, 3, 32, 6))
    with pytest.raises(ValueError, match='B x C x H x W'):
        model.extract_patches(torch.zeros(3, 32, 32))


# ------------------------------------------------------------------ the context network
def _perturb_row(net, z, r):
    with torch.no_grad():
        base = net(z)
        z2 = z.clone()
        z2[:, :, r] += torch.randn_like(z2[:, :, r])
        return base, net(z2)


@pytest.mark.parametrize('r', [0, 3, 6])
def test_context_network_is_row_causal(r):
    """Changing the patch vectors of row r changes no context at rows < r, and changes rows >=
    r (the network is not trivially constant)."""
    torch.manual_seed(0)
    net = CPCContextNetwork(in_channels=16, channels=8, num_blocks=4, kernel_size=(2, 3))
    z = torch.randn(2, 16, 7, 5)
    base, out = _perturb_row(net, z, r)
    diff = (out - base).abs().amax(dim=(0, 1, 3))  # per row
    assert (diff[:r] == 0).all(), diff
    assert (diff[r:min(r + 5, 7)] > 0).all(), diff  # receptive field: 4 blocks x 1 row upwards


def test_context_receptive_field_grows_one_row_per_block():
    torch.manual_seed(0)
    net = CPCContextNetwork(in_channels=4, channels=8, num_blocks=2, kernel_size=(2, 3))
    base, out = _perturb_row(net, torch.randn(1, 4, 7, 7), 1)
    diff = (out - base).abs().amax(dim=(0, 1, 3))
    assert diff[1:4].gt(0).all() and diff[4:].eq(0).all() and diff[0] == 0, diff


def test_row_causal_conv_matches_a_masked_convolution():
    """Our top-padded kh x kw conv = PixelCNN's (2kh-1) x kw kernel with the rows below the
    centre masked to zero, applied with 'same' padding."""
    torch.manual_seed(0)
    conv = RowCausalConv2d(3, 5, (2, 3))
    x = torch.randn(2, 3, 6, 6)
    masked = torch.zeros(5, 3, 3, 3)
    masked[:, :, :2] = conv.weight  # rows r-1, r; row r+1 masked
    ref = F.conv2d(x, masked, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)
    with pytest.raises(ValueError, match='odd kw'):
        RowCausalConv2d(3, 5, (2, 2))


# ------------------------------------------------------------------ InfoNCE
def _ref_cpc_loss(model, z, context, temperature, normalize):
    """Explicit loops: for every step k, image b, row r < R - k and column c, the prediction
    W_k c[b, :, r, c] + bias is scored (dot product, or cosine if ``normalize``, / temperature)
    against the positive z[b, :, r + k, c] and, as negatives, the vectors of every other
    (image, row, column) of the batch."""
    def score(p, t):
        if normalize:
            p, t = p / p.norm(), t / t.norm()
        return float(p @ t) / temperature

    b_sz, d, rows, cols = z.shape
    locations = [(b, r, c) for b in range(b_sz) for r in range(rows) for c in range(cols)]
    per_step = {}
    for k in range(1, model.pred_steps + 1):
        conv = model.predictors[k - 1]
        w, bias = conv.weight[:, :, 0, 0].double(), conv.bias.double()
        values = []
        for b in range(b_sz):
            for r in range(rows - k):
                for c in range(cols):
                    pred = w @ context[b, :, r, c].double() + bias
                    pos = score(pred, z[b, :, r + k, c].double())
                    negs = [score(pred, z[bb, :, rr, cc].double()) for bb, rr, cc in locations
                            if (bb, rr, cc) != (b, r + k, c)]
                    m = max([pos] + negs)
                    log_denominator = m + math.log(math.exp(pos - m) +
                                                   sum(math.exp(v - m) for v in negs))
                    values.append(log_denominator - pos)
        per_step[k] = values
    return per_step


@pytest.mark.parametrize('temperature,normalize', [(1.0, False), (0.1, True)],
                         ids=['raw-dot-product', 'cosine'])
def test_cpc_infonce_matches_reference(temperature, normalize):
    torch.manual_seed(0)
    model = _cpc(pred_steps=2, skip_steps=0,
                 loss=dict(type='CPCInfoNCELoss', temperature=temperature, normalize=normalize))
    z = torch.randn(2, 256, 4, 3) * 0.1
    context = torch.randn(2, 128, 4, 3)
    steps = model.step_losses(z, context)
    ref = _ref_cpc_loss(model, z, context, temperature, normalize)
    assert [len(losses) for losses, _ in steps] == [2 * 3 * 3, 2 * 2 * 3]
    for k, (losses, hit) in enumerate(steps, start=1):
        np.testing.assert_allclose(losses.detach().double().numpy(), ref[k], rtol=1e-4)
    pooled = sum(sum(v) for v in ref.values()) / sum(len(v) for v in ref.values())
    all_losses = torch.cat([losses for losses, _ in steps])
    assert float(all_losses.mean()) == pytest.approx(pooled, rel=1e-5)


@pytest.mark.parametrize('temperature,normalize', [(1.0, False), (0.1, True)])
def test_cpc_infonce_loss_module_against_reference(temperature, normalize):
    from mmssl_ext.models.losses import CPCInfoNCELoss
    g = torch.Generator().manual_seed(0)
    pred, cand = torch.randn(5, 6, generator=g), torch.randn(9, 6, generator=g)
    pos_index = torch.tensor([0, 8, 3, 3, 4])
    loss_fn = CPCInfoNCELoss(temperature=temperature, normalize=normalize)
    ref = []
    for n in range(5):
        p = F.normalize(pred[n], dim=0) if normalize else pred[n]
        scores = []
        for m in range(9):
            t = F.normalize(cand[m], dim=0) if normalize else cand[m]
            scores.append(float(p @ t) / temperature)
        neg = [s for m, s in enumerate(scores) if m != int(pos_index[n])]
        pos = scores[int(pos_index[n])]
        ref.append(-math.log(math.exp(pos) / (math.exp(pos) + sum(math.exp(s) for s in neg))))
    np.testing.assert_allclose(loss_fn(pred, cand, pos_index, reduction='none').numpy(), ref,
                               rtol=1e-5)
    assert float(loss_fn(pred, cand, pos_index)) == pytest.approx(np.mean(ref), rel=1e-5)
    with pytest.raises(IndexError, match='out of range \\[0, 9\\)'):
        loss_fn(pred, cand, torch.tensor([0, 9, 1, 1, 1]))
    with pytest.raises(ValueError, match='pos_index must have shape \\(5,\\)'):
        loss_fn(pred, cand, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match='temperature must be > 0'):
        CPCInfoNCELoss(temperature=0)


def test_predictions_do_not_see_the_rows_they_predict():
    """End to end through the model's step losses: changing the patch vectors of rows > r
    leaves the predictions made from row r unchanged."""
    torch.manual_seed(0)
    model = _cpc(pred_steps=2)
    z = torch.randn(1, 256, 7, 7)
    z2 = z.clone()
    z2[:, :, 4:] += 1.0
    with torch.no_grad():
        c1, c2 = model.neck(z), model.neck(z2)
        p1, p2 = model.predictors[0](c1), model.predictors[0](c2)
    torch.testing.assert_close(p1[:, :, :4], p2[:, :, :4], rtol=0, atol=0)
    assert not torch.equal(p1[:, :, 4:], p2[:, :, 4:])


# ------------------------------------------------------------------ the algorithm
def _uint8_batch(b=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def test_forward_backward_reaches_every_part():
    torch.manual_seed(0)
    model = _cpc(pred_steps=5, skip_steps=0)  # every offset 1..5 (the config skips 1 and 2)
    model.train()
    data = model.data_preprocessor(dict(inputs=_uint8_batch(3), data_samples=None), True)
    out = model(**data, mode='loss')
    assert set(out) == {'loss', 'accuracy', 'nce_k1', 'nce_k2', 'nce_k3', 'nce_k4', 'nce_k5'}
    assert torch.isfinite(out['loss']) and 0 <= float(out['accuracy']) <= 1
    assert all(not v.requires_grad for k, v in out.items() if k != 'loss')
    # the pooled mean: step k has 3 images x (7 - k) rows x 7 columns predictions
    counts = [3 * (7 - k) * 7 for k in range(1, 6)]
    pooled = sum(float(out[f'nce_k{k}']) * n for k, n in enumerate(counts, start=1)) / sum(counts)
    assert float(out['loss']) == pytest.approx(pooled, rel=1e-5)
    out['loss'].backward()
    grad = model.backbone.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert _grad_norm(model.neck) > 0
    assert all(_grad_norm(p) > 0 for p in model.predictors)
    # layer normalisation (GroupNorm with one group) in the encoder, no BatchNorm
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in model.backbone.modules())


def test_patch_augmentation():
    model = _cpc(patch_augment=dict(flip_prob=1.0, color_drop_prob=1.0))
    model.train()
    patches = torch.randn(50, 3, 8, 8) + 5  # no zeros
    torch.manual_seed(0)
    out = model.augment_patches(patches)
    kept = (out != 0).flatten(2).all(dim=2)  # per patch and channel: kept or dropped
    assert kept.sum(dim=1).eq(1).all()  # exactly one channel of each patch survives
    flipped = patches.flip(-1)
    assert torch.equal(out[kept], flipped[kept])
    assert len(set(kept.float().argmax(1).tolist())) == 3  # the kept channel varies
    flip_only = _cpc(patch_augment=dict(flip_prob=0.5))
    torch.manual_seed(0)
    out = flip_only.augment_patches(patches)
    is_flipped = [torch.equal(o, f) for o, f in zip(out, flipped)]
    assert all(torch.equal(o, p) or fl for o, p, fl in zip(out, patches, is_flipped))
    assert 0 < sum(is_flipped) < 50
    gray = _cpc(patch_augment=dict(color_drop_prob=0.5))
    with pytest.raises(ValueError, match='color_drop_prob needs 3-channel patches, got 1'):
        gray.augment_patches(torch.zeros(2, 1, 8, 8))
    # evaluation: no augmentation of the patches
    model.eval()
    z = model.encode_patches(patches.view(1, 5, 10, 3, 8, 8))
    assert z.shape == (1, 256, 5, 10)


@pytest.mark.parametrize('changes,match', [
    (dict(patch_size=0), 'patch_size and patch_stride must be positive'),
    (dict(pred_steps=0), 'pred_steps must be an int >= 1'),
    (dict(patch_augment=dict(jitter=0.5)), "unknown patch_augment keys \\['jitter'\\]"),
    (dict(patch_augment=dict(flip_prob=2)), 'flip_prob=2.0 is not in \\[0, 1\\]'),
])
def test_rejects_bad_arguments(changes, match):
    with pytest.raises(ValueError, match=match):
        _cpc(**changes)


def test_rejects_more_steps_than_rows():
    model = _cpc(pred_steps=7, skip_steps=0)
    with pytest.raises(ValueError, match='pred_steps=7 must be smaller than the number of '
                                         'patch rows \\(7\\)'):
        model.loss(torch.zeros(2, 3, 32, 32), None)


def test_features_for_knn_from_the_config():
    from mmengine.dataset import default_collate
    from mmssl_ext.evaluation.features import extract_features
    model = _cpc()
    items = [dict(inputs=img, data_samples=DataSample().set_gt_label(i % 3))
             for i, img in enumerate(_uint8_batch(5))]

    class _Loader(list):
        dataset = items

    feats, labels = extract_features(model, _Loader([default_collate(items)]), progress=False)
    assert feats.shape == (5, 256) and torch.isfinite(feats).all()


def test_imagenet_config_geometry():
    cfg = Config.fromfile(IN1K_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(depth=18)  # the geometry, not the weights, is under test
    model_cfg.neck.in_channels = 512
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    # the appendix A.2 pseudo-code's offsets: the row 3 below only
    assert model.grid_size(256) == 7 and model.pred_offsets == (3, )
    assert model.extract_patches(torch.zeros(1, 3, 256, 256)).shape == (1, 7, 7, 3, 64, 64)


def test_fmnist_config_trains_through_tools_train(tiny_tree, tmp_path):
    work = str(tmp_path / 'cpc')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=3', 'default_hooks.checkpoint.interval=3',
            'default_hooks.logger.interval=1']
    runner = train_api.main([CPC_CFG, '--work-dir', work, '--cfg-options', *opts])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 3 and np.isfinite(losses).all()
    state = torch.load(f'{work}/iter_3.pth', map_location='cpu')['state_dict']
    assert {'predictors.0.weight', 'neck.proj.weight', 'backbone.conv1.weight'} <= set(state)


def test_skipped_offsets_predict_further_rows():
    """With ``skip_steps`` S, predictor i scores the patch ``S + 1 + i`` rows below each context
    (the reference pseudo-code's target ``(i + 1)`` rows below for ``i`` from
    ``steps_to_ignore``), against every patch vector of the batch, by explicit loops."""
    torch.manual_seed(0)
    model = _cpc(pred_steps=2, skip_steps=2)
    assert model.pred_offsets == (3, 4) and len(model.predictors) == 2
    b_sz, rows, cols = 2, 6, 3
    z = torch.randn(b_sz, 256, rows, cols) * 0.1
    context = torch.randn(b_sz, 128, rows, cols)
    steps = model.step_losses(z, context)
    locations = [(b, r, c) for b in range(b_sz) for r in range(rows) for c in range(cols)]
    for i, (k, (losses, _)) in enumerate(zip((3, 4), steps)):
        conv = model.predictors[i]
        w, bias = conv.weight[:, :, 0, 0].double(), conv.bias.double()
        ref = []
        for b in range(b_sz):
            for r in range(rows - k):
                for c in range(cols):
                    pred = F.normalize(w @ context[b, :, r, c].double() + bias, dim=0)
                    scores = torch.stack([pred @ F.normalize(z[bb, :, rr, cc].double(), dim=0)
                                          for bb, rr, cc in locations]) / 0.1
                    pos = locations.index((b, r + k, c))
                    ref.append(float(torch.logsumexp(scores, 0) - scores[pos]))
        np.testing.assert_allclose(losses.detach().double().numpy(), ref, rtol=1e-4)
    with pytest.raises(ValueError, match='pred_steps=4 after skip_steps=2 must be smaller'):
        _cpc(pred_steps=4, skip_steps=2).step_losses(z, context)
    with pytest.raises(ValueError, match='skip_steps must be an int >= 0'):
        _cpc(skip_steps=-1)
