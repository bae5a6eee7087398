"""The PIRL backbone drops into an mmdet Faster R-CNN and an mmpretrain linear-probe config."""
import torch
from mmengine.registry import DefaultScope

from mmssl_ext.cli.extract_backbone import extract_backbone
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

LINEAR_CFG = f'{REPO}/configs/transfer/linear-probe_r18-w32_1xb256-10e_fmnist.py'


def _expected(ckpt):
    sd = torch.load(ckpt, map_location='cpu')['state_dict']
    return {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}


def _assert_loaded(module, expected):
    state = module.state_dict()
    assert set(state) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(state[k], v, msg=f'{k} not loaded')


def test_pirl_backbone_in_linear_probe_config(tiny_pirl_ckpt):
    from mmpretrain.registry import MODELS
    cfg = load_config(LINEAR_CFG)
    cfg.model.backbone.init_cfg.checkpoint = tiny_pirl_ckpt  # full checkpoint, prefix route
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    expected = _expected(tiny_pirl_ckpt)
    _assert_loaded(model.backbone, expected)
    # frozen: a training step moves the linear head only
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(any(p is q for q in model.head.parameters()) for p in params)
    opt = torch.optim.SGD(params, lr=1.0)
    from mmpretrain.structures import DataSample
    x = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 10) for i in range(4)]
    head_before = model.head.fc.weight.clone()
    model.loss(x, samples)['loss'].backward()
    opt.step()
    _assert_loaded(model.backbone, expected)
    assert not torch.equal(model.head.fc.weight, head_before)


def test_pirl_backbone_in_mmdet_faster_rcnn(tiny_pirl_ckpt, tmp_path):
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    out = str(tmp_path / 'pirl_backbone.pth')
    extract_backbone(tiny_pirl_ckpt, out)
    cfg = load_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    cfg.model.backbone.update(depth=18, stem_channels=32, base_channels=32,
                              init_cfg=dict(type='Pretrained', checkpoint=out))
    cfg.model.neck.in_channels = [32, 64, 128, 256]
    with DefaultScope.overwrite_default_scope('mmdet'):
        det = DET_MODELS.build(cfg.model)
    det.init_weights()
    _assert_loaded(det.backbone, _expected(tiny_pirl_ckpt))
