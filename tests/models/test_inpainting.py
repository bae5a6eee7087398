"""Context Encoder: the masked L2 loss, the decoder's shapes, the hole filling, forward/backward,
the shipped configs' pipelines and a short tools/train.py run."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.models.heads.inpainting_head import ContextEncoderHead
from mmssl_ext.registry import MODELS, TRANSFORMS
from tests.helpers import REPO

FMNIST_CFG = f'{REPO}/configs/inpainting/inpainting_r18-w32_1xb64-3000it_fmnist.py'
IN1K_CFG = f'{REPO}/configs/inpainting/inpainting_r50_8xb32-coslr-200e_in1k.py'


def _reference_masked_mse(pred, target, mask, overlap=0.0):
    """Written independently: loop over every pixel and channel, weight 1 inside the mask and
    ``overlap`` outside, divide by the total weight of all (pixel, channel) pairs."""
    p, t, m = pred.double().numpy(), target.double().numpy(), mask.numpy()
    total, weight = 0.0, 0.0
    b, c, h, w = p.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                wt = 1.0 if m[i, y, x] else overlap
                for ch in range(c):
                    total += wt * (p[i, ch, y, x] - t[i, ch, y, x]) ** 2
                    weight += wt
    return total / weight


def _rand(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _mask(b=2, h=8, w=8, seed=0):
    m = torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed)) < 0.3
    m[0, 0, 0] = True
    return m.to(torch.uint8)


def _head(**kw):
    args = dict(in_channels=8, channels=(8, 4, 4), output_stride=8, feat_size=1)
    args.update(kw)
    return ContextEncoderHead(**args)


# ------------------------------------------------------------------------------------ the loss
@pytest.mark.parametrize('overlap', [0.0, 0.1])
def test_loss_matches_reference(overlap):
    pred, target, mask = _rand((2, 3, 8, 8), 1), _rand((2, 3, 8, 8), 2), _mask()
    loss = _head(overlap_weight=overlap).loss(pred, target, mask)
    assert loss.item() == pytest.approx(_reference_masked_mse(pred, target, mask, overlap),
                                        rel=1e-5)
    # the (B, 1, H, W) mask layout gives the same value
    assert _head(overlap_weight=overlap).loss(pred, target, mask[:, None]).item() == \
        pytest.approx(loss.item(), rel=1e-6)


def test_loss_counts_only_masked_pixels():
    head = _head()
    pred, target, mask = _rand((2, 3, 8, 8), 1), _rand((2, 3, 8, 8), 2), _mask()
    base = head.loss(pred, target, mask).item()
    m = mask.bool()[:, None].expand_as(pred)
    changed_outside = torch.where(m, pred, pred + 100 * _rand(pred.shape, 9))
    assert head.loss(changed_outside, target, mask).item() == pytest.approx(base, rel=1e-6)
    changed_inside = torch.where(m, pred + 1.0, pred)
    assert head.loss(changed_inside, target, mask).item() != pytest.approx(base, rel=1e-3)
    # and the gradient is zero exactly outside the mask
    pred = pred.clone().requires_grad_()
    head.loss(pred, target, mask).backward()
    assert (pred.grad[~m] == 0).all() and (pred.grad[m] != 0).all()
    # with overlap_weight > 0 the context counts too
    assert _head(overlap_weight=0.5).loss(changed_outside, target, mask).item() > 2 * base


def test_loss_of_empty_mask_is_an_error():
    pred, target = _rand((2, 3, 8, 8), 1), _rand((2, 3, 8, 8), 2)
    empty = torch.zeros(2, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match='selects no pixel'):
        _head().loss(pred, target, empty)
    # defined when the context is weighted: the plain MSE times nothing else
    loss = _head(overlap_weight=0.5).loss(pred, target, empty)
    assert loss.item() == pytest.approx(((pred - target) ** 2).mean().item(), rel=1e-5)


def test_loss_shape_errors():
    pred = _rand((2, 3, 8, 8), 1)
    with pytest.raises(ValueError, match='mask shape'):
        _head().loss(pred, pred, torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match='pred'):
        _head().loss(pred, pred[:, :1], _mask())


# ---------------------------------------------------------------------------------- the decoder
@pytest.mark.parametrize('size,channels,upsample', [(32, 16, 'deconv'), (128, 16, 'deconv'),
                                                    (224, 8, 'deconv'), (128, 8, 'bilinear')])
def test_decoder_output_matches_input_size(size, channels, upsample):
    head = ContextEncoderHead(in_channels=channels, channels=(8, 8, 4, 4, 4), output_stride=32,
                              feat_size=size // 32, upsample=upsample)
    feats = (_rand((2, 4, size // 16, size // 16), 0), _rand((2, channels, size // 32,
                                                              size // 32), 1))
    assert head(feats).shape == (2, 3, size, size)


@pytest.mark.parametrize('size', [32, 128])
def test_decoder_after_resnet_backbone(size):
    """The half-width ResNet-18 of the Fashion-MNIST config, then the decoder: input size out."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(dict(type='ResNet', depth=18, stem_channels=32,
                                     base_channels=32))
    head = ContextEncoderHead(in_channels=256, channels=(32, 16, 16, 8, 8),
                              feat_size=size // 32)
    x = _rand((2, 3, size, size), 0)
    assert head(backbone(x)).shape == x.shape


@pytest.mark.parametrize('kwargs,match', [
    (dict(channels=(8, 4)), 'channels must hold 3'),
    (dict(output_stride=12), 'output_stride'),
    (dict(upsample='nearest'), 'upsample'),
    (dict(overlap_weight=-1.0), 'overlap_weight'),
    (dict(in_channels=0), 'in_channels'),
])
def test_head_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _head(**kwargs)


def test_head_feature_size_and_channel_errors():
    with pytest.raises(ValueError, match='feat_size'):
        _head(feat_size=2)(_rand((1, 8, 3, 3), 0))
    with pytest.raises(ValueError, match='in_channels'):
        _head()(_rand((1, 5, 1, 1), 0))
    assert _head(bottleneck=False)(_rand((1, 8, 3, 3), 0)).shape == (1, 3, 24, 24)


def test_channel_wise_fc_does_not_mix_channels():
    head = _head(feat_size=2)
    cwfc = head.bottleneck[0]
    x = _rand((1, 8, 2, 2), 0)
    y = cwfc(x)
    x2 = x.clone()
    x2[:, 3] += 5.0
    y2 = cwfc(x2)
    assert torch.equal(torch.cat([y[:, :3], y[:, 4:]], 1), torch.cat([y2[:, :3], y2[:, 4:]], 1))
    ref = x[0, 3].flatten() @ cwfc.weight[3] + cwfc.bias[3]  # fully connected within channel 3
    assert torch.allclose(y[0, 3].flatten(), ref, atol=1e-6)


# -------------------------------------------------------------------------------- the algorithm
def _tiny_model(fill_value=None):
    cfg = Config.fromfile(FMNIST_CFG)
    model_cfg = copy.deepcopy(cfg.model)
    if fill_value is not None:
        model_cfg.fill_value = fill_value
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    return model


def _samples(masks):
    return [DataSample().set_mask(m) for m in masks]


def test_backbone_input_has_masked_pixels_filled_only():
    model = _tiny_model()
    fill = model.fill_value.flatten().clone()
    assert fill.shape == (3,) and not torch.allclose(fill, fill[0].expand(3))  # per channel
    inputs, masks = _rand((3, 3, 32, 32), 0), _mask(3, 32, 32, seed=1)
    seen = {}
    model.backbone.register_forward_pre_hook(lambda mod, args: seen.setdefault('x', args[0]))
    model.loss(inputs, _samples(masks))
    x, m = seen['x'], masks.bool()
    for c in range(3):
        assert torch.equal(x[:, c][m], fill[c].expand(int(m.sum())))
        assert torch.equal(x[:, c][~m], inputs[:, c][~m])


def test_scalar_fill_value_and_bad_fill():
    model = _tiny_model(fill_value=0.0)
    masks = _mask(2, 32, 32).bool()
    out = model.mask_inputs(_rand((2, 3, 32, 32), 0), masks)
    assert (out.permute(1, 0, 2, 3)[:, masks] == 0).all()
    with pytest.raises(ValueError, match='fill_value'):
        _tiny_model(fill_value=[[0.0, 1.0]])
    with pytest.raises(ValueError, match='fill_value has 2 values'):
        _tiny_model(fill_value=[0.0, 1.0]).mask_inputs(_rand((2, 3, 32, 32), 0), masks)


def test_forward_backward_finite_with_gradient_to_first_conv():
    model = _tiny_model()
    model.train()
    inputs, masks = _rand((4, 3, 32, 32), 0), _mask(4, 32, 32)
    out = model.loss(inputs, _samples(masks))
    assert set(out) == {'loss', 'masked_fraction'}
    assert torch.isfinite(out['loss']) and out['loss'].requires_grad
    assert not out['masked_fraction'].requires_grad
    assert out['masked_fraction'].item() == pytest.approx(masks.float().mean().item())
    out['loss'].backward()
    grad = model.backbone.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.head.final.weight.grad.abs().sum() > 0


def test_loss_through_model_ignores_reconstruction_outside_the_hole():
    """The model's loss is the head's masked MSE of its own reconstruction against the input."""
    model = _tiny_model()
    model.eval()  # fixed BN statistics: the same forward twice
    inputs, masks = _rand((2, 3, 32, 32), 0), _mask(2, 32, 32)
    seen = {}
    model.head.register_forward_hook(lambda mod, args, out: seen.setdefault('pred', out))
    loss = model.loss(inputs, _samples(masks))['loss']
    ref = _reference_masked_mse(seen['pred'].detach(), inputs, masks)
    assert loss.item() == pytest.approx(ref, rel=1e-5)


def test_missing_or_mismatched_mask_errors():
    model = _tiny_model()
    with pytest.raises(ValueError, match='InpaintingMask'):
        model.loss(_rand((2, 3, 32, 32), 0), [DataSample(), DataSample()])
    with pytest.raises(ValueError, match='do not match'):
        model.loss(_rand((2, 3, 32, 32), 0), _samples(_mask(2, 16, 16)))
    with pytest.raises(ValueError, match='decoder output'):  # 28 px: 1x1 features -> 32 px
        model.loss(_rand((2, 3, 28, 28), 0), _samples(_mask(2, 28, 28)))


@pytest.mark.parametrize('pack', [dict(type='PackInputs'),
                                  dict(type='PackInputs', algorithm_keys=['mask'])])
def test_config_pipeline_collate_preprocess_loss(pack):
    """The Fashion-MNIST pipeline (after loading) -> default_collate -> the model's
    preprocessor -> loss.  With ``algorithm_keys=['mask']`` PackInputs stores the raw numpy
    mask instead of the tensor; the model accepts both."""
    cfg = Config.fromfile(FMNIST_CFG)
    steps = cfg.train_dataloader.dataset.pipeline[1:-1] + [pack]
    model = _tiny_model()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = [TRANSFORMS.build(s) for s in steps]
    np.random.seed(0)
    samples = []
    for seed in range(4):
        res = dict(img=np.random.RandomState(seed).randint(0, 256, (28, 28, 3), dtype=np.uint8))
        for t in pipeline:
            res = t(res)
        samples.append(res)
    data = model.data_preprocessor(default_collate(samples), True)
    assert data['inputs'].shape == (4, 3, 32, 32)
    out = model(**data, mode='loss')
    assert torch.isfinite(out['loss'])
    assert 0.25 <= out['masked_fraction'].item() < 0.25 + 0.1407  # random blocks, 1/4 target


def test_in1k_pipeline_is_paper_128px_with_central_64px_hole():
    cfg = Config.fromfile(IN1K_CFG)
    assert cfg.model.head.feat_size * cfg.model.head.output_stride == 128
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = [TRANSFORMS.build(s) for s in cfg.train_dataloader.dataset.pipeline[1:]]
    res = dict(img=np.random.RandomState(0).randint(0, 256, (300, 400, 3), dtype=np.uint8))
    for t in pipeline:
        res = t(res)
    assert res['inputs'].shape == (3, 128, 128)
    mask = res['data_samples'].mask
    assert int(mask.sum()) == 64 * 64 and mask[32:96, 32:96].all()


def test_fmnist_config_trains_two_iterations(tiny_tree, tmp_path):
    """tools/train.py's path on the tiny tree: 2 iterations, finite losses, a checkpoint whose
    backbone loads into a plain mmpretrain ResNet (the transferable part) and runs through
    tools/knn_eval.py."""
    work = str(tmp_path / 'inpainting')
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1']
    runner = train_api.main([FMNIST_CFG, '--work-dir', work, '--cfg-options', *opts])
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 2 and np.isfinite(losses).all()
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu', weights_only=False)
    backbone_sd = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()
                   if k.startswith('backbone.')}
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        resnet = MODELS.build(dict(type='ResNet', depth=18, stem_channels=32, base_channels=32))
    resnet.load_state_dict(backbone_sd, strict=True)
    # tools/knn_eval.py: the model's preprocessor (test mode) + backbone on ordinary images
    from mmssl_ext.cli import knn_eval
    knn_opts = [f'knn_eval.{s}_dataloader.{k}' for s in ('train', 'val')
                for k in (f'dataset.data_root={tiny_tree}', 'num_workers=0')]
    res = knn_eval.main([FMNIST_CFG, osp.join(work, 'iter_2.pth'), '--ks', '3',
                         '--cfg-options', *knn_opts])
    assert 0.0 <= res['checkpoint']['k3_top1'] <= 100.0
