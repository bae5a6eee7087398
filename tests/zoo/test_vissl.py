"""VISSL -> mmpretrain ResNet: every layout convert_vissl_to_torchvision.py accepts, the wide
ResNets (WIDTH_MULTIPLIER), heads kept or dropped; converted features equal the source's."""
import pytest
import torch

from mmssl_ext.zoo.common import ZooFormatError
from mmssl_ext.zoo.vissl import convert_vissl
from tests.zoo.helpers import (ATOL, load_strict, mm_resnet, no_conv_init, tv_features,
                               tv_resnet, vissl_checkpoint, vissl_trunk, vissl_wide_resnet50)


def _check_features(net, state, cfg, size=32):
    model = load_strict(mm_resnet(cfg), state)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, ref = model(x)[0], tv_features(net, x)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_resnet50_classy_state_dict():
    net = tv_resnet(50)
    with no_conv_init():  # the converter's check builds an mmpretrain ResNet-50
        state, meta = convert_vissl(vissl_checkpoint(net, heads=False))
    assert meta['backbone_cfg'] == dict(type='ResNet', depth=50, in_channels=3)
    assert all(k.startswith('backbone.') for k in state)
    _check_features(net, state, meta['backbone_cfg'], size=32)


def test_resnet18_features():
    net = tv_resnet(18)
    state, meta = convert_vissl(vissl_checkpoint(net))
    _check_features(net, state, meta['backbone_cfg'])


@pytest.mark.parametrize('layout', ['model_state_dict', 'bare', 'feature_eval', 'params_file',
                                    'torchvision'])
def test_older_layouts(layout):
    """The other layouts give the classy_state_dict layout's weights (whose features are
    checked above)."""
    net = tv_resnet(18)
    ckpt = {'model_state_dict': vissl_trunk(net)} if layout == 'model_state_dict' else \
        net.state_dict() if layout == 'torchvision' else \
        vissl_trunk(net, {'bare': '_feature_blocks.', 'feature_eval': 'base_model._feature_blocks.',
                          'params_file': 'trunk._feature_blocks.'}[layout])
    state, meta = convert_vissl(ckpt)
    ref, _ = convert_vissl(vissl_checkpoint(net))
    assert meta['backbone_cfg']['depth'] == 18 and list(state) == list(ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_heads_dropped_or_kept():
    net = tv_resnet(18)
    ckpt = vissl_checkpoint(net)
    dropped, _ = convert_vissl(ckpt)
    kept, meta = convert_vissl(ckpt, keep_heads=True)
    assert not any(k.startswith('heads.') for k in dropped)
    assert set(kept) - set(dropped) == {'heads.0.clf.0.weight', 'heads.0.clf.0.bias'}
    assert meta['heads_kept']


def test_width_multiplier():
    """VISSL's ResNet-50 w2: stem_channels = base_channels = 128 in mmpretrain's ResNet."""
    net = vissl_wide_resnet50(2)
    with no_conv_init():
        state, meta = convert_vissl(vissl_checkpoint(net, heads=False))
    assert meta['backbone_cfg'] == dict(type='ResNet', depth=50, in_channels=3,
                                        stem_channels=128, base_channels=128)
    # every weight has its place and shape in the wide mmpretrain ResNet (the key mapping is
    # the one whose features test_resnet50_classy_state_dict compares)
    load_strict(mm_resnet(meta['backbone_cfg']), state)


def test_resnext_and_alexnet_refused():
    import torchvision
    tv = torchvision.models.resnext50_32x4d()
    with pytest.raises(ZooFormatError, match='ResNeXt'):
        convert_vissl({'_feature_blocks.' + k: v for k, v in tv.state_dict().items()})
    with pytest.raises(ZooFormatError, match='Accepted layouts'):
        convert_vissl({'_feature_blocks.conv0.weight': torch.zeros(96, 3, 11, 11)})


def test_cli(tmp_path, capsys):
    from mmssl_ext.cli.convert import vissl_main
    net = tv_resnet(18)
    src, dst = str(tmp_path / 'model_final_checkpoint_phase199.torch'), str(tmp_path / 'o.pth')
    torch.save(vissl_checkpoint(net), src)
    vissl_main([src, dst, '--keep-heads'])
    assert 'wrote 122 tensors' in capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['backbone_cfg'] == dict(type='ResNet', depth=18, in_channels=3)
    assert 'heads.0.clf.0.weight' in saved['state_dict']
    assert torch.equal(saved['state_dict']['backbone.layer2.0.downsample.0.weight'],
                       net.layer2[0].downsample[0].weight)
