"""tools/extract_backbone.py output drops into mmpretrain and mmdet configs via init_cfg."""
import pytest
import torch
from mmssl_ext.utils.config import load_config
from mmengine.registry import DefaultScope

from mmssl_ext.cli.extract_backbone import extract_backbone, main as extract_main


def _expected_backbone(ckpt_path):
    full = torch.load(ckpt_path, map_location='cpu')
    return {k[len('backbone.'):]: v for k, v in full['state_dict'].items()
            if k.startswith('backbone.')}


def _assert_same(state, expected):
    assert set(state) == set(expected), (
        f'missing {sorted(set(expected) - set(state))[:5]}, '
        f'extra {sorted(set(state) - set(expected))[:5]}')
    for k, v in expected.items():
        torch.testing.assert_close(state[k], v, msg=f'backbone weight {k} differs')


def test_extract_keeps_only_backbone(tiny_moco_ckpt, tmp_path):
    out = str(tmp_path / 'bb.pth')
    info = extract_main([tiny_moco_ckpt, out])
    saved = torch.load(out, map_location='cpu', weights_only=True)
    expected = _expected_backbone(tiny_moco_ckpt)
    _assert_same(saved['state_dict'], expected)
    assert info['num_tensors'] == len(expected) > 50
    assert not any(k.startswith(('backbone.', 'neck.', 'target', 'queue'))
                   for k in saved['state_dict'])


def test_wrong_prefix_is_named(tiny_moco_ckpt, tmp_path):
    with pytest.raises(KeyError, match="no weights with prefix 'encoder.'.*backbone"):
        extract_backbone(tiny_moco_ckpt, str(tmp_path / 'x.pth'), prefix='encoder.')
    assert not (tmp_path / 'x.pth').exists()


def test_loads_into_mmpretrain_image_classifier(tiny_moco_ckpt, tmp_path):
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import MODELS
    out = str(tmp_path / 'bb.pth')
    extract_backbone(tiny_moco_ckpt, out)
    cfg = load_config('mmpretrain::resnet/resnet18_8xb32_in1k.py')
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=out)
    cfg.model.head.num_classes = 10
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    _assert_same(model.backbone.state_dict(), _expected_backbone(tiny_moco_ckpt))


def _faster_rcnn_r18(init_cfg):
    cfg = load_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    cfg.model.backbone.depth = 18
    cfg.model.backbone.init_cfg = init_cfg
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    return cfg.model


@pytest.mark.parametrize('route', ['extracted', 'full_with_prefix'])
def test_loads_into_mmdet_faster_rcnn(tiny_moco_ckpt, tmp_path, route):
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if route == 'extracted':
        out = str(tmp_path / 'bb.pth')
        extract_backbone(tiny_moco_ckpt, out)
        init_cfg = dict(type='Pretrained', checkpoint=out)
    else:
        init_cfg = dict(type='Pretrained', checkpoint=tiny_moco_ckpt, prefix='backbone.')
    with DefaultScope.overwrite_default_scope('mmdet'):
        det = DET_MODELS.build(_faster_rcnn_r18(init_cfg))
    det.init_weights()
    _assert_same(det.backbone.state_dict(), _expected_backbone(tiny_moco_ckpt))
    # and the detector runs (mmcv's compiled RoIAlign / nms are exercised)
    det.eval()
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                         scale_factor=(1.0, 1.0), pad_shape=(64, 64),
                                         batch_input_shape=(64, 64)))
    with torch.no_grad():
        res = det.predict(torch.randn(1, 3, 64, 64), [sample])
    assert res[0].pred_instances.bboxes.shape[-1] == 4


def _save_backbone_ckpt(path, in_channels):
    """A checkpoint (mmengine layout) of the Fashion-MNIST Colorization model, or of the same
    model with an RGB backbone; weights perturbed away from any fresh initialisation."""
    from mmssl_ext.registry import MODELS as SSL_MODELS
    from tests.helpers import REPO
    cfg = load_config(f'{REPO}/configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py')
    cfg.model.backbone.in_channels = in_channels
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = SSL_MODELS.build(cfg.model) if in_channels == 1 else \
            SSL_MODELS.build(cfg.model.backbone)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.save(dict(meta=dict(iter=1), state_dict={
        (k if in_channels == 1 else f'backbone.{k}'): v
        for k, v in model.state_dict().items()}), path)
    return cfg.model.backbone


def test_in_channels_replicates_a_one_channel_first_conv(tmp_path, capsys):
    """--in-channels 3: Colorization's 1-channel conv1 becomes a 3-channel conv (weights / 3), so
    a gray RGB image gives the backbone exactly the response the 1-channel image gave."""
    from mmssl_ext.registry import MODELS as SSL_MODELS
    torch.manual_seed(0)
    src = str(tmp_path / 'color.pth')
    backbone_cfg = _save_backbone_ckpt(src, in_channels=1)
    out = str(tmp_path / 'rgb.pth')
    info = extract_main([src, out, '--in-channels', '3'])
    assert info['replicated'] == 'conv1.weight'
    assert 'replicated conv1.weight from 1 to 3 input channels' in capsys.readouterr().out
    saved = torch.load(out, map_location='cpu', weights_only=True)
    assert saved['meta']['replicated_input_channels'] == dict(key='conv1.weight', in_channels=3)
    expected = _expected_backbone(src)
    w1 = expected.pop('conv1.weight')
    assert w1.shape[1] == 1
    torch.testing.assert_close(saved['state_dict']['conv1.weight'], w1.repeat(1, 3, 1, 1) / 3)
    _assert_same({k: v for k, v in saved['state_dict'].items() if k != 'conv1.weight'}, expected)
    # same response to a gray image: 1-channel backbone on x vs 3-channel backbone on (x, x, x)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        gray_net = SSL_MODELS.build(dict(backbone_cfg, in_channels=1))
        rgb_net = SSL_MODELS.build(dict(backbone_cfg, in_channels=3,
                                        init_cfg=dict(type='Pretrained', checkpoint=out)))
    gray_net.load_state_dict(_expected_backbone(src))
    rgb_net.init_weights()
    gray_net.eval()
    rgb_net.eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        for a, b in zip(gray_net(x), rgb_net(x.repeat(1, 3, 1, 1))):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_in_channels_needs_a_one_channel_first_conv(tmp_path):
    torch.manual_seed(0)
    src = str(tmp_path / 'rgb_src.pth')
    _save_backbone_ckpt(src, in_channels=3)
    with pytest.raises(ValueError, match="first convolution weight 'conv1.weight' has 3 input "
                                         'channels.*expected 1'):
        extract_backbone(src, str(tmp_path / 'x.pth'), in_channels=3)
    assert not (tmp_path / 'x.pth').exists()
    torch.save(dict(state_dict={'backbone.fc.weight': torch.zeros(2, 2)}), tmp_path / 'fc.pth')
    with pytest.raises(ValueError, match='no convolution weight'):
        extract_backbone(str(tmp_path / 'fc.pth'), str(tmp_path / 'y.pth'), in_channels=3)
