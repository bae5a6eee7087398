"""mmselfsup 1.x (already mmpretrain-keyed: checked), OpenSelfSup / mmselfsup 0.x and
backbone-only files (converted), DeepCluster's Sobel stem (needs SobelDataPreprocessor)."""
import pytest
import torch

from mmssl_ext.cli.convert import mmselfsup_main
from mmssl_ext.zoo.common import ZooFormatError
from mmssl_ext.zoo.mmselfsup import convert_mmselfsup
from tests.zoo.helpers import ATOL, load_strict, mm_resnet, mm_vit, tv_features, tv_resnet


def _features_equal(net, state, cfg):
    model = load_strict(mm_resnet(cfg), state)
    x = torch.randn(2, cfg['in_channels'], 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], tv_features(net, x), atol=ATOL, rtol=0)


def _backbone(net):
    return {k: v.clone() for k, v in net.state_dict().items() if not k.startswith('fc.')}


def test_mmselfsup1_checked_and_kept(tmp_path, capsys):
    """rotation-pred / relative-loc / NPID of mmselfsup 1.x: mmengine checkpoint, mmpretrain
    keys."""
    net = tv_resnet(18)
    state = {'backbone.' + k: v for k, v in _backbone(net).items()}
    state.update({'neck.fc.weight': torch.zeros(4, 512), 'head.cls.weight': torch.zeros(4, 4)})
    src, dst = str(tmp_path / 'rotation.pth'), str(tmp_path / 'out.pth')
    torch.save({'meta': {'epoch': 70, 'iter': 5000}, 'state_dict': state,
                'message_hub': {'log_scalars': {}}}, src)
    info = mmselfsup_main([src, dst])
    assert 'mmselfsup (backbone.*)' in capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    assert set(saved['state_dict']) == {k for k in state if k.startswith('backbone.')}
    _features_equal(net, saved['state_dict'], info['meta']['backbone_cfg'])
    del state['backbone.layer4.1.bn2.running_var']
    with pytest.raises(ZooFormatError, match=r'do not fill.*layer4\.1\.bn2\.running_var'):
        convert_mmselfsup({'state_dict': state})


def test_openselfsup_moco_and_backbone_only():
    net = tv_resnet(18)
    moco = {f'module.encoder_{e}.0.{k}': v for e in 'qk' for k, v in _backbone(net).items()}
    moco['module.encoder_q.1.mlp.0.weight'] = torch.zeros(4, 512)
    state, meta = convert_mmselfsup({'state_dict': moco})
    assert 'encoder_q.0' in meta['source_format']
    _features_equal(net, state, meta['backbone_cfg'])
    state2, meta2 = convert_mmselfsup({'state_dict': _backbone(net)})  # extract_backbone_weights
    assert meta2['source_format'] == 'mmselfsup (backbone-only file)'
    assert all(torch.equal(state[k], state2[k]) for k in state) and set(state) == set(state2)


def test_deepcluster_sobel_stem():
    torch.manual_seed(0)
    net = tv_resnet(18)
    net.conv1 = torch.nn.Conv2d(2, 64, 7, 2, 3, bias=False)  # the Sobel (gx, gy) input
    ckpt = {'state_dict': {'backbone.' + k: v for k, v in _backbone(net).items()}}
    with pytest.raises(ZooFormatError, match='SobelDataPreprocessor.*--sobel'):
        convert_mmselfsup(ckpt)
    state, meta = convert_mmselfsup(ckpt, sobel=True)
    assert meta['backbone_cfg']['in_channels'] == 2 and 'SobelDataPreprocessor' in meta['note']
    _features_equal(net, state, meta['backbone_cfg'])


def test_mmselfsup1_vit():
    """MAE / MoCo v3 of mmselfsup 1.x: an mmpretrain VisionTransformer backbone."""
    cfg = dict(type='VisionTransformer', img_size=32, patch_size=16, in_channels=3,
               arch=dict(embed_dims=128, num_layers=2, num_heads=2, feedforward_channels=256),
               out_type='cls_token', final_norm=True)
    vit = mm_vit(cfg)
    state, meta = convert_mmselfsup({'state_dict': {'backbone.' + k: v
                                                    for k, v in vit.state_dict().items()}})
    assert meta['backbone_cfg'] == cfg
    assert all(torch.equal(state['backbone.' + k], v) for k, v in vit.state_dict().items())


def test_unknown_refused():
    with pytest.raises(ZooFormatError, match='Accepted layouts'):
        convert_mmselfsup({'state_dict': {'encoder.weight': torch.zeros(2)}})
